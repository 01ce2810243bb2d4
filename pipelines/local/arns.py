"""The region and account local resources are named in (``arn:aws:sagemaker:local:000000000000:...``)."""

REGION = "local"
ACCOUNT = "000000000000"


def arn(kind: str, name: str) -> str:
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:{kind}/{name}"
