"""CUDA sites in megatron-core 0.16.1 that the CPU shim was validated against.

Each entry is a megatron source line (``megatron/core/<file>.py:<line>``) where megatron-core
asks for CUDA (a device, a torch.cuda call, a type string) on the paths this project runs:
GPTModel forward/backward, 1F1B and interleaved schedules, DDP, (distributed) optimizer,
gradient clipping and dist_checkpointing. A census entry outside this set means megatron-core
changed: check what the new site needs on CPU, then add it here
(``tests/test_runtime_shim.py`` prints the census entries to add).
"""

KNOWN_CUDA_SITES: frozenset[str] = frozenset(
    {
        "megatron/core/dist_checkpointing/exchange_utils.py:110",
        "megatron/core/dist_checkpointing/exchange_utils.py:499",
        "megatron/core/dist_checkpointing/strategies/filesystem_async.py:230",
        "megatron/core/dist_checkpointing/strategies/fully_parallel.py:272",
        "megatron/core/dist_checkpointing/strategies/fully_parallel.py:281",
        "megatron/core/dist_checkpointing/strategies/state_dict_saver.py:251",
        "megatron/core/dist_checkpointing/strategies/state_dict_saver.py:252",
        "megatron/core/distributed/param_and_grad_buffer.py:797",
        "megatron/core/distributed/param_and_grad_buffer.py:800",
        "megatron/core/distributed/param_and_grad_buffer.py:803",
        "megatron/core/distributed/param_and_grad_buffer.py:806",
        "megatron/core/models/common/embeddings/rotary_pos_embedding.py:162",
        "megatron/core/models/common/embeddings/rotary_pos_embedding.py:78",
        "megatron/core/models/common/embeddings/rotary_pos_embedding.py:80",
        "megatron/core/optimizer/clip_grads.py:103",
        "megatron/core/optimizer/clip_grads.py:167",
        "megatron/core/optimizer/clip_grads.py:174",
        "megatron/core/optimizer/distrib_optimizer.py:1077",
        "megatron/core/optimizer/distrib_optimizer.py:1079",
        "megatron/core/optimizer/distrib_optimizer.py:1089",
        "megatron/core/optimizer/distrib_optimizer.py:361",
        "megatron/core/optimizer/distrib_optimizer.py:420",
        "megatron/core/optimizer/distrib_optimizer.py:582",
        "megatron/core/optimizer/optimizer.py:481",
        "megatron/core/optimizer/optimizer.py:485",
        "megatron/core/optimizer/optimizer.py:907",
        "megatron/core/pipeline_parallel/p2p_communication.py:310",
        "megatron/core/pipeline_parallel/p2p_communication.py:313",
        "megatron/core/pipeline_parallel/p2p_communication.py:318",
        "megatron/core/pipeline_parallel/p2p_communication.py:321",
        "megatron/core/pipeline_parallel/p2p_communication.py:398",
        "megatron/core/pipeline_parallel/schedules.py:2138",
        "megatron/core/pipeline_parallel/schedules.py:596",
        "megatron/core/pipeline_parallel/schedules.py:983",
        "megatron/core/tensor_parallel/layers.py:1194",
        "megatron/core/tensor_parallel/layers.py:1197",
        "megatron/core/tensor_parallel/layers.py:258",
        "megatron/core/tensor_parallel/layers.py:261",
        "megatron/core/tensor_parallel/layers.py:870",
        "megatron/core/tensor_parallel/layers.py:873",
        "megatron/core/tensor_parallel/random.py:102",
        "megatron/core/tensor_parallel/random.py:111",
        "megatron/core/tensor_parallel/random.py:235",
        "megatron/core/tensor_parallel/random.py:237",
        "megatron/core/tensor_parallel/random.py:238",
        "megatron/core/tensor_parallel/random.py:422",
        "megatron/core/tensor_parallel/random.py:55",
        "megatron/core/transformer/utils.py:35",
        "megatron/core/utils.py:1207",
        "megatron/core/utils.py:628",
        "megatron/core/utils.py:631",
    }
)
