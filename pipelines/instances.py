"""What the project knows about SageMaker instance types: which have GPUs, and how many.

One table for the loader (``torch_distributed`` needs a GPU instance), the compiler (GPU or CPU image)
and the local engine (how many processes ``torch_distributed`` starts). The service model botocore
ships lists the valid types, but not their accelerators, so the GPU counts are written here.
"""

from __future__ import annotations

# NVIDIA GPUs per instance type, for every GPU family SageMaker trains, processes or serves on
GPUS: dict[str, int] = {
    **{f"ml.g4dn.{size}": 1 for size in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge")},
    "ml.g4dn.12xlarge": 4, "ml.g4dn.metal": 8,
    **{f"ml.{family}.{size}": 1 for family in ("g5", "g6", "g6e") for size in ("xlarge", "2xlarge", "4xlarge",
                                                                               "8xlarge", "16xlarge")},
    **{f"ml.{family}.12xlarge": 4 for family in ("g5", "g6", "g6e")},
    **{f"ml.{family}.24xlarge": 4 for family in ("g5", "g6", "g6e")},
    **{f"ml.{family}.48xlarge": 8 for family in ("g5", "g6", "g6e")},
    "ml.p2.xlarge": 1, "ml.p2.8xlarge": 8, "ml.p2.16xlarge": 16,
    "ml.p3.2xlarge": 1, "ml.p3.8xlarge": 4, "ml.p3.16xlarge": 8, "ml.p3dn.24xlarge": 8,
    "ml.p4d.24xlarge": 8, "ml.p4de.24xlarge": 8,
    "ml.p5.48xlarge": 8, "ml.p5e.48xlarge": 8, "ml.p5en.48xlarge": 8,
}  # fmt: skip

# an instance type any GPU image can be looked up for, when the real one is a run-time parameter
DEFAULT_GPU_INSTANCE = "ml.g5.xlarge"
GPU_FAMILIES_HINT = "ml.g4dn.*, ml.g5.*, ml.g6.*, ml.g6e.*, ml.p3.*, ml.p4d.* or ml.p5.*"


def gpu_count(instance_type: str) -> int:
    """NVIDIA GPUs of an instance type; 0 for CPU types and for types the table does not know."""
    return GPUS.get(instance_type, 0)


def has_gpu(instance_type: str) -> bool:
    return gpu_count(instance_type) > 0
