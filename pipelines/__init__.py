"""Pipeline-as-code for PyTorch on Amazon SageMaker."""
