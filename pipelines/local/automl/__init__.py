"""The local AutoML job (search.py) and the inference program of its models (serve.py): programs, run as files."""
