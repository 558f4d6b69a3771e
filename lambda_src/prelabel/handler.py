"""GT pre-label Lambda adapter — placeholder until the Ground Truth issue completes it."""


def lambda_handler(event, context):  # pragma: no cover - replaced by the Ground Truth issue
    raise NotImplementedError("prelabel handler is built in the Ground Truth issue")
