"""What a run did, for people: the pipeline graph, the closing summary and the HTML report.

Shared by local and SageMaker executions: both build a `RunView` (`pipelines.local.view`,
`pipelines.remote.view`) and everything here reads only that view and the definition JSON.
"""
