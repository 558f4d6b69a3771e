"""SageMaker Ground Truth: its contracts, the pre-/post-annotation Lambda logic, the ``gt`` CLI, the
worker template and its viewer assets, and the output-manifest reader/writer (GT's output format,
also the portal's export).
"""
