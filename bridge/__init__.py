"""smbridge: the bridge between Azure DevOps and Amazon SageMaker.

Importing ``bridge`` is cheap: it never imports the SageMaker SDK.
"""

__version__ = "0.1.0"
