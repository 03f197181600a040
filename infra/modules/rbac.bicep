// Every role assignment in Perennial, in one place. Each is scoped to the one resource it is
// about (never the subscription or resource group), named guid(scope, principal, role) so a
// re-deployment is idempotent, and carries principalType so it works before the new
// identity has replicated through Entra ID. No Owner, Contributor or User Access Administrator.
// tests/infra pins every role id below to its built-in name.

@description('Principal id of the Function App identity.')
param appPrincipalId string

@description('Principal id of the identity training jobs run as on the GPU cluster.')
param computePrincipalId string

@description('Principal id of the Event Grid (dead-letter) identity.')
param eventGridPrincipalId string

@description('Optional: a person (or CI principal) who may upload data to the landing container; empty for none.')
param uploaderPrincipalId string = ''

@description('Kind of principal uploaderPrincipalId is.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param uploaderPrincipalType string = 'User'

@description('Grant the app AzureML Compute Operator (create/start/stop compute). Not needed: the cluster is declared here and scales with the job queue.')
param appCanManageCompute bool = false

param storageAccountName string
param mlStorageAccountName string
param workspaceName string
param customTopicName string
param applicationInsightsName string
param containerRegistryName string
param landingContainerName string
param deadLetterContainerName string
@description('Container of delayed labels (feedback/<model>/<name>.csv) the live checks read.')
param feedbackContainerName string
@description('Container of run manifests; training jobs read their job manifest and contract there.')
param manifestsContainerName string

// Built-in role definition ids (the same in every tenant).
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageBlobDataReader: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  azureMLDataScientist: 'f6c7c914-8db3-469d-8ca1-694a8f32e121'
  azureMLComputeOperator: 'e503ece1-11d0-4e8e-8e2c-7a6c3bf38815'
  monitoringReader: '43d0d8ad-25c7-4714-9337-8ba259a9fe05'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  eventGridDataSender: 'd5a91429-5739-47e2-a06b-3470a27159e7'
  acrPull: '7f951dda-4ed3-4680-a7ca-43fe172d538d'
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName

  resource blobService 'blobServices' existing = {
    name: 'default'

    resource landing 'containers' existing = {
      name: landingContainerName
    }

    resource deadLetter 'containers' existing = {
      name: deadLetterContainerName
    }

    resource feedback 'containers' existing = {
      name: feedbackContainerName
    }

    resource manifests 'containers' existing = {
      name: manifestsContainerName
    }
  }
}

resource mlStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: mlStorageAccountName
}

resource workspace 'Microsoft.MachineLearningServices/workspaces@2024-10-01' existing = {
  name: workspaceName
}

resource customTopic 'Microsoft.EventGrid/topics@2025-02-15' existing = {
  name: customTopicName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' existing = {
  name: containerRegistryName
}

// ---- the Function App identity

// Host leases, the Flex deployment package and every Perennial container (landing, manifests, verdicts, ...).
resource appBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appPrincipalId, roles.storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Durable Functions' task-hub queues.
resource appQueues 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appPrincipalId, roles.storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Durable Functions' history/instances tables and Perennial's registry tables.
resource appTables 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appPrincipalId, roles.storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// azure-ai-ml uploads job code and registers models into the workspace's identity-based datastore.
resource appMlStorage 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(mlStorage.id, appPrincipalId, roles.storageBlobDataContributor)
  scope: mlStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Submit jobs, register models, create online deployments and set endpoint traffic (no compute writes).
resource appDataScientist 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(workspace.id, appPrincipalId, roles.azureMLDataScientist)
  scope: workspace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.azureMLDataScientist)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Only if the app must create/start/stop compute itself; off by default.
resource appComputeOperator 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (appCanManageCompute) {
  name: guid(workspace.id, appPrincipalId, roles.azureMLComputeOperator)
  scope: workspace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.azureMLComputeOperator)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Read online deployment metrics (latency, errors) for the rollout gates.
resource appMonitoringReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(workspace.id, appPrincipalId, roles.monitoringReader)
  scope: workspace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringReader)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Publish Perennial.* events to the custom topic with Entra ID.
resource appEventSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(customTopic.id, appPrincipalId, roles.eventGridDataSender)
  scope: customTopic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventGridDataSender)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Send telemetry to Application Insights, whose local auth is off.
resource appTelemetry 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, appPrincipalId, roles.monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// ---- the GPU cluster's identity (training and evaluation jobs)

// Read job inputs and write outputs/checkpoints in the workspace datastores.
resource computeMlStorage 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(mlStorage.id, computePrincipalId, roles.storageBlobDataContributor)
  scope: mlStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: computePrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Read a run's batches (landing/<model>/) and its job manifest and contract (manifests/<model>/) straight from the
// app storage account: those two containers only. Jobs run third-party packages; the rest of the account holds the
// app's code package, the Durable task hub and quarantined or dead-lettered data, none of which a job needs.
resource computeLanding 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage::blobService::landing.id, computePrincipalId, roles.storageBlobDataReader)
  scope: storage::blobService::landing
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataReader)
    principalId: computePrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource computeManifests 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage::blobService::manifests.id, computePrincipalId, roles.storageBlobDataReader)
  scope: storage::blobService::manifests
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataReader)
    principalId: computePrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Pull the training environment image.
resource computeAcrPull 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(registry.id, computePrincipalId, roles.acrPull)
  scope: registry
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.acrPull)
    principalId: computePrincipalId
    principalType: 'ServicePrincipal'
  }
}

// ---- the Azure ML workspace's identity: nothing here. Azure ML grants its system identity what its
// identity-based default datastores need (blob and file data roles on its storage account) when it
// creates the workspace; an assignment of ours for the same principal, role and scope would have
// another name and fail the deployment with RoleAssignmentExists. tests/infra holds to this.

// ---- Event Grid's identity

// Write undeliverable events to the dead-letter container, and nowhere else.
resource eventGridDeadLetter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage::blobService::deadLetter.id, eventGridPrincipalId, roles.storageBlobDataContributor)
  scope: storage::blobService::deadLetter
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: eventGridPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// ---- optional: the person running azd, so they can upload batches with --auth-mode login

// Upload to the landing container (new batches) and the feedback container (delayed labels) only.
resource uploaderLanding 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(uploaderPrincipalId)) {
  name: guid(storage::blobService::landing.id, uploaderPrincipalId, roles.storageBlobDataContributor)
  scope: storage::blobService::landing
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: uploaderPrincipalId
    principalType: uploaderPrincipalType
  }
}

resource uploaderFeedback 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(uploaderPrincipalId)) {
  name: guid(storage::blobService::feedback.id, uploaderPrincipalId, roles.storageBlobDataContributor)
  scope: storage::blobService::feedback
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: uploaderPrincipalId
    principalType: uploaderPrincipalType
  }
}
