"""Model packages in moto's Model Registry, for the deploy-side tests."""

from __future__ import annotations

from typing import Any

CONTAINER = {"Image": "xgb:1.7-1", "ModelDataUrl": "s3://b/model.tar.gz"}


def add_model_package(sagemaker: Any, group: str, status: str) -> str:
    """Register a version of ``group`` (created if missing) with ``status``; return its ARN."""
    groups = sagemaker.list_model_package_groups(NameContains=group)["ModelPackageGroupSummaryList"]
    if not any(g["ModelPackageGroupName"] == group for g in groups):
        sagemaker.create_model_package_group(ModelPackageGroupName=group)
    return sagemaker.create_model_package(
        ModelPackageGroupName=group,
        ModelApprovalStatus=status,
        InferenceSpecification={
            "Containers": [CONTAINER],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
    )["ModelPackageArn"]
