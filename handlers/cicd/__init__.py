"""cicd: start GitHub Actions workflows and Azure Pipelines runs from Azure ML events."""
