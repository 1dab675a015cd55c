"""megatron-telecom: continual pretraining of Llama/Mistral into telecom LLMs on megatron-core."""

from pathlib import Path

from setuptools import find_packages, setup

version = {}
exec((Path(__file__).parent / "megatron_telecom" / "version.py").read_text(), version)

setup(
    name="megatron-telecom",
    version=version["__version__"],
    description="Continual pretraining of general LLMs into telecom LLMs on megatron-core",
    long_description=(Path(__file__).parent / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["megatron_telecom", "megatron_telecom.*"]),
    include_package_data=True,
    package_data={"megatron_telecom": ["data/curation/*.txt", "data/*.tsv", "evaluation/lm_eval_tasks/*.yaml",
                                     "evaluation/lm_eval_tasks/*.py"]},
    install_requires=[
        # torch is deliberately not pinned here: install the build you want first
        # (CPU: torch==2.13.0; GPU: your cluster's CUDA build). megatron-core requires it.
        "torch>=2.4",
        "megatron-core>=0.16.1,<0.17",  # tested with 0.16.1 (newest for Python 3.11); CI pins it
        "psutil",  # dist_checkpointing's async writer hangs without it
        "numpy",
        "sentencepiece",
        "protobuf",  # reads SentencePiece model files (normalizer check, vocabulary extension)
        "nltk",
        "transformers",
        "safetensors",
        "mistral-common",  # ships real Mistral SentencePiece models, used offline
        "pyyaml",
        "orjson",  # fast JSON parsing in preprocessing
        "regex",  # Unicode classes (\p{L}) of Hugging Face pre-tokenizer patterns, for the word cache
        "tensorboard",
        "gguf",  # transformers reads the built-in base model's GGUF file with it
        "accelerate",
        "pyzipper",  # TeleQnA.zip is AES-encrypted
        "matplotlib",  # evaluate.py compare draws its PNG
        "rouge-score==0.1.2",  # generative evaluation: ROUGE-1/2/L
        "sacrebleu==2.6.0",  # generative evaluation: corpus BLEU and chrF
    ],
    extras_require={
        "data": ["datatrove==0.10.1", "python-docx", "pypdf", "ftfy"],
        # trl: SFT masks checked against TRL's; torchmetrics: our SQuAD EM/F1 checked against its squad();
        # peft: LoRA adapter exports loaded by PeftModel
        "dev": ["pytest", "pytest-timeout", "pytest-xdist", "ruff", "pyzipper", "trl>=1.16,<1.17",
                "torchmetrics==1.9.0", "peft==0.21.2"],
        # GPU images only: installing TE on a CPU machine breaks `import megatron.core`.
        "te": ["transformer-engine[pytorch]"],
        "wandb": ["wandb"],
    },
    scripts=[],
)
