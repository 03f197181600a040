"""Sample payloads, adapted from Microsoft's published schema samples to Perennial's layout."""

from __future__ import annotations

import copy
from typing import Any

WORKSPACE = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-perennial"
    "/providers/Microsoft.MachineLearningServices/workspaces/mlw-perennial"
)
ACCOUNT = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-perennial"
    "/providers/Microsoft.Storage/storageAccounts/stperennial"
)

BLOB_CREATED: dict[str, Any] = {
    "topic": ACCOUNT,
    "subject": "/blobServices/default/containers/landing/blobs/fraud/2026/11/batch-001.csv",
    "eventType": "Microsoft.Storage.BlobCreated",
    "eventTime": "2017-06-26T18:41:00.9584103Z",
    "id": "831e1650-001e-001b-66ab-eeb76e069631",
    "data": {
        "api": "PutBlockList",
        "clientRequestId": "6d79dbfb-0e37-4fc4-981f-442c9ca65760",
        "requestId": "831e1650-001e-001b-66ab-eeb76e000000",
        "eTag": '"0x8D4BCC2E4835CD0"',
        "contentType": "text/csv",
        "contentLength": 524288,
        "blobType": "BlockBlob",
        "url": "https://stperennial.blob.core.windows.net/landing/fraud/2026/11/batch-001.csv",
        "sequencer": "00000000000004420000000000028963",
        "storageDiagnostics": {"batchId": "b68529f3-68cd-4744-baa4-3c0498ec19f0"},
    },
    "dataVersion": "",
    "metadataVersion": "1",
}

BLOB_CREATED_CLOUDEVENT: dict[str, Any] = {
    "source": ACCOUNT,
    "subject": "/blobServices/default/containers/landing/blobs/fraud/batch-002.csv",
    "type": "Microsoft.Storage.BlobCreated",
    "time": "2017-06-26T18:41:00.9584103Z",
    "id": "831e1650-001e-001b-66ab-eeb76e069632",
    "data": {
        "api": "PutBlob",
        "clientRequestId": "6d79dbfb-0e37-4fc4-981f-442c9ca65760",
        "requestId": "831e1650-001e-001b-66ab-eeb76e000000",
        "eTag": '"0x8D4BCC2E4835CD1"',
        "contentType": "text/csv",
        "contentLength": 1024,
        "blobType": "BlockBlob",
        "url": "https://stperennial.blob.core.windows.net/landing/fraud/batch-002.csv",
        "sequencer": "00000000000004420000000000028964",
        "storageDiagnostics": {"batchId": "b68529f3-68cd-4744-baa4-3c0498ec19f0"},
    },
    "specversion": "1.0",
}


def gen2(api: str) -> dict[str, Any]:
    event = copy.deepcopy(BLOB_CREATED)
    event["subject"] = "/blobServices/default/containers/landing/blobs/fraud/lake/part-0.csv"
    event["data"].update(
        api=api,
        url="https://stperennial.dfs.core.windows.net/landing/fraud/lake/part-0.csv",
        contentOffset=0,
        blobType="BlockBlob",
    )
    return event


DRIFT: dict[str, Any] = {
    "topic": WORKSPACE,
    "eventType": "Microsoft.MachineLearningServices.DatasetDriftDetected",
    "subject": "datadrift/01d29aa4-e6a4-470a-9ef3-66660d21f8ef/run/01d29aa4_1571590300380",
    "eventTime": "2019-10-21T14:08:38.9856208+00:00",
    "id": "2684de79-b145-4dcf-ad2e-6a1db798585f",
    "data": {
        "DataDriftId": "01d29aa4-e6a4-470a-9ef3-66660d21f8ef",
        "DataDriftName": "fraud-drift-monitor",
        "RunId": "01d29aa4-e6a4-470a-9ef3-66660d21f8ef_1571590300380",
        "BaseDatasetId": "3c56d136-0f64-4657-a0e8-5162089a88a3",
        "TargetDatasetId": "d7e74d2e-c972-4266-b5fb-6c9c182d2a74",
        "DriftCoefficient": 0.83503490684180886,
        "StartTime": "2019-07-04T00:00:00+00:00",
        "EndTime": "2019-07-05T00:00:00+00:00",
    },
    "dataVersion": "2",
    "metadataVersion": "1",
}

RUN_STATUS: dict[str, Any] = {
    "topic": WORKSPACE,
    "eventType": "Microsoft.MachineLearningServices.RunStatusChanged",
    "subject": "experiments/0fa9dfaa-cba3-4fa7-b590-23e48548f5c1/runs/fraud-train-abc-c1",
    "eventTime": "2017-10-10T10:10:10.000Z",
    "id": "831e1650-001e-001b-66ab-eeb76e069631",
    "data": {
        "experimentId": "0fa9dfaa-cba3-4fa7-b590-23e48548f5c1",
        "experimentName": "perennial",
        "runId": "fraud-train-abc-c1",
        "runType": None,
        "runTags": {"perennial_model": "fraud", "perennial_candidate": "c1"},
        "runProperties": {"runTemplate": "command"},
        "runStatus": "failed",
    },
    "dataVersion": "2",
    "metadataVersion": "1",
}

ML_MODEL_REGISTERED: dict[str, Any] = {
    "topic": WORKSPACE,
    "eventType": "Microsoft.MachineLearningServices.ModelRegistered",
    "subject": "models/fraud:3",
    "eventTime": "2017-10-10T10:10:10.000Z",
    "id": "831e1650-001e-001b-66ab-eeb76e069699",
    "data": {"ModelName": "fraud", "ModelVersion": 3, "ModelTags": {}, "ModelProperties": {}},
    "dataVersion": "2",
    "metadataVersion": "1",
}

MONITOR_ALERT: dict[str, Any] = {
    "schemaId": "azureMonitorCommonAlertSchema",
    "data": {
        "essentials": {
            "alertId": "/subscriptions/00000000-0000-0000-0000-000000000000/providers/Microsoft.AlertsManagement/alerts/b9569717-bc32-442f-add5-83a997729330",
            "alertRule": "latency-p95",
            "severity": "Sev3",
            "signalType": "Metric",
            "monitorCondition": "Fired",
            "monitoringService": "Platform",
            "alertTargetIDs": [WORKSPACE.lower() + "/onlineendpoints/fraud-ep"],
            "configurationItems": ["fraud-ep"],
            "originAlertId": "3f2d4487-b0fc-4125-8bd5-7ad17384221e_PipeLineAlertRG_microsoft.insights_metricAlerts_latency",
            "firedDateTime": "2019-03-22T13:58:24.3713213Z",
            "description": "p95 latency above 500 ms",
            "essentialsVersion": "1.0",
            "alertContextVersion": "1.0",
        },
        "alertContext": {
            "properties": None,
            "conditionType": "SingleResourceMultipleMetricCriteria",
            "condition": {
                "windowSize": "PT5M",
                "allOf": [
                    {
                        "metricName": "RequestLatency_P95",
                        "metricNamespace": "Microsoft.MachineLearningServices/workspaces/onlineEndpoints",
                        "operator": "GreaterThan",
                        "threshold": "500",
                        "timeAggregation": "Average",
                        "dimensions": [],
                        "metricValue": 731.5,
                    }
                ],
                "windowStartTime": "2019-03-22T13:40:03.064Z",
                "windowEndTime": "2019-03-22T13:45:03.064Z",
            },
        },
        "customProperties": None,
    },
}

RETRAIN_REQUESTED: dict[str, Any] = {
    "id": "8f3a2c55-6d0f-4d43-9d1f-9bd7d2b5e5aa",
    "eventType": "Perennial.RetrainRequested",
    "subject": "models/fraud",
    "eventTime": "2026-11-22T03:00:00Z",
    "data": {"model": "fraud", "reason": "model older than 30 days", "requested_by": "schedule"},
    "dataVersion": "1.0",
    "metadataVersion": "1",
}

MANUAL: dict[str, Any] = {"model": "fraud", "reason": "new labels from the fraud team", "requested_by": "alice"}
