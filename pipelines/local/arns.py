"""The region and account local resources are named in (``arn:aws:sagemaker:local:000000000000:...``)."""

REGION = "local"
ACCOUNT = "000000000000"


def arn(resource: str, name: str) -> str:
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:{resource}/{name}"
