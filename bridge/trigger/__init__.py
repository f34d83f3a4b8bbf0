"""The approval trigger: SageMaker Model Registry approval → exactly one Azure DevOps run.

Lambda entry point: ``bridge.trigger.handler.lambda_handler``.
"""
