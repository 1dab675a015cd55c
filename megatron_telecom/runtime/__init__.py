"""Device and distributed bring-up: torchrun/SLURM environment, gloo/nccl, the CPU shim."""
