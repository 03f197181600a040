// Perennial on Azure: everything `azd up` provisions. Subscription scope, so the resource
// group is part of the deployment; every resource lives in that one group.
// Event Grid subscriptions are not here: they need the deployed functions (see wiring.bicep,
// run by the azd postdeploy hook in hooks/postdeploy.sh).
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name; it seeds every resource name.')
param environmentName string

@minLength(1)
@description('Azure region for every resource (it must offer Flex Consumption, Azure ML and the GPU VM size).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Object id of the person running azd (AZURE_PRINCIPAL_ID): may upload batches to the landing container. Empty for none.')
param principalId string = ''

@description('Kind of principal principalId is (User for a person, ServicePrincipal for CI).')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param principalType string = 'User'

@description('Resource group name; empty for rg-<environmentName>.')
param resourceGroupName string = ''

@description('GPU cluster name; must equal training.compute in models/*.yaml.')
param computeName string = 'gpu-cluster'

@description('VM size of the GPU cluster (check your regional quota for it).')
param computeVmSize string = 'Standard_NC4as_T4_v3'

@description('Dedicated, or LowPriority (cheaper; nodes can be pre-empted and jobs resume from checkpoints).')
@allowed([
  'Dedicated'
  'LowPriority'
])
param computeVmPriority string = 'Dedicated'

@description('Most GPU nodes the cluster may run at once.')
@minValue(1)
@maxValue(100)
param computeMaxNodes int = 2

@description('Seconds an idle GPU node is kept before the cluster scales back to zero.')
@minValue(60)
param computeIdleSeconds int = 600

@description('Also route Azure ML drift events (DatasetDriftDetected) to the app.')
param subscribeWorkspaceEvents bool = true

@description('Grant the app AzureML Compute Operator. Off: the cluster is declared here and scales with jobs.')
param appCanManageCompute bool = false

@description('Most instances the Function App may scale out to.')
@minValue(40)
@maxValue(1000)
param functionMaxInstances int = 40

// Kept validation verdicts (verdicts/<model>/<key>.json, about 80 KB each, one per blob version and contract/edges)
// are a cache: a deleted one only costs the next run that needs it one more read of that blob. A verdict is written
// when its blob is first judged (reusing it does not rewrite it), so it is never older than its blob: 180 days is
// twice a typical training.window_days (90 in models/fraud.yaml), so a run whose window is shorter than that never
// finds one of its verdicts gone. A model landing 1,000 blobs a day then keeps about 180 x 80 MB = 14 GB of them
// (more for a while after a new champion's edges re-judge its window) instead of growing by 80 MB a day for ever.
@description('Days after it was written that a kept validation verdict is deleted; keep it above every model\'s training.window_days.')
@minValue(30)
@maxValue(7300)
param verdictRetentionDays int = 180

@description('Email address that gets Perennial\'s alerts (a run failed or rolled back, errors, lost events, HTTP 5xx). Empty: no action group and no alert rule are deployed.')
param alertEmail string = ''

var abbrs = loadJsonContent('abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
  application: 'perennial'
}
// azure.yaml's service name; azd finds the Function App by the azd-service-name tag.
var serviceName = 'perennial'
var functionAppName = '${abbrs.webSitesFunctions}${resourceToken}'
var deploymentContainerName = 'app-package-${take(resourceToken, 7)}'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: empty(resourceGroupName) ? '${abbrs.resourcesResourceGroups}${environmentName}' : resourceGroupName
  location: location
  tags: tags
}

module identities 'modules/identities.bicep' = {
  name: 'identities'
  scope: rg
  params: {
    location: location
    tags: tags
    appIdentityName: '${abbrs.managedIdentityUserAssignedIdentities}app-${resourceToken}'
    computeIdentityName: '${abbrs.managedIdentityUserAssignedIdentities}compute-${resourceToken}'
    eventGridIdentityName: '${abbrs.managedIdentityUserAssignedIdentities}eventgrid-${resourceToken}'
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    location: location
    tags: tags
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    deploymentContainerName: deploymentContainerName
    verdictRetentionDays: verdictRetentionDays
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    location: location
    tags: tags
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    applicationInsightsName: '${abbrs.insightsComponents}${resourceToken}'
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    location: location
    tags: tags
    name: '${abbrs.keyVaultVaults}${resourceToken}'
  }
}

module ml 'modules/ml.bicep' = {
  name: 'ml'
  scope: rg
  params: {
    location: location
    tags: tags
    workspaceName: '${abbrs.machineLearningServicesWorkspaces}${resourceToken}'
    storageAccountName: '${abbrs.storageStorageAccounts}ml${resourceToken}'
    containerRegistryName: '${abbrs.containerRegistryRegistries}${resourceToken}'
    keyVaultId: keyVault.outputs.id
    applicationInsightsId: monitoring.outputs.applicationInsightsId
    computeName: computeName
    computeVmSize: computeVmSize
    computeVmPriority: computeVmPriority
    computeMaxNodes: computeMaxNodes
    computeIdleSeconds: computeIdleSeconds
    computeIdentityId: identities.outputs.computeIdentityId
  }
}

module eventGrid 'modules/eventgrid.bicep' = {
  name: 'eventgrid'
  scope: rg
  params: {
    location: location
    tags: tags
    customTopicName: '${abbrs.eventGridDomainsTopics}${resourceToken}'
    storageSystemTopicName: '${abbrs.eventGridSystemTopics}storage-${resourceToken}'
    storageAccountId: storage.outputs.id
    workspaceSystemTopicName: subscribeWorkspaceEvents ? '${abbrs.eventGridSystemTopics}ml-${resourceToken}' : ''
    workspaceId: ml.outputs.workspaceId
    eventGridIdentityId: identities.outputs.eventGridIdentityId
  }
}

module functionApp 'modules/function-app.bicep' = {
  name: 'function-app'
  scope: rg
  params: {
    location: location
    tags: tags
    name: functionAppName
    planName: '${abbrs.webServerFarms}${resourceToken}'
    serviceName: serviceName
    identityId: identities.outputs.appIdentityId
    identityClientId: identities.outputs.appClientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    workspaceName: ml.outputs.workspaceName
    eventGridEndpoint: eventGrid.outputs.customTopicEndpoint
    endpointSuffix: take(resourceToken, 6)
    maximumInstanceCount: functionMaxInstances
  }
  // The host starts as soon as the site exists: let it find its storage roles in place.
  dependsOn: [
    rbac
  ]
}

module rbac 'modules/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    appPrincipalId: identities.outputs.appPrincipalId
    computePrincipalId: identities.outputs.computePrincipalId
    eventGridPrincipalId: identities.outputs.eventGridPrincipalId
    uploaderPrincipalId: principalId
    uploaderPrincipalType: principalType
    appCanManageCompute: appCanManageCompute
    storageAccountName: storage.outputs.name
    mlStorageAccountName: ml.outputs.storageAccountName
    workspaceName: ml.outputs.workspaceName
    customTopicName: eventGrid.outputs.customTopicName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    containerRegistryName: ml.outputs.containerRegistryName
    landingContainerName: 'landing'
    deadLetterContainerName: 'deadletter'
    feedbackContainerName: 'feedback'
    manifestsContainerName: 'manifests'
  }
}

// Alerts for whoever is on call, only when there is an address to send them to (infra/README.md, Alerts).
module alerts 'modules/alerts.bicep' = if (!empty(alertEmail)) {
  name: 'alerts'
  scope: rg
  params: {
    location: location
    tags: tags
    actionGroupName: 'ag-${resourceToken}'
    alertEmail: alertEmail
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    functionAppName: functionApp.outputs.name
    customTopicName: eventGrid.outputs.customTopicName
    storageSystemTopicName: eventGrid.outputs.storageSystemTopicName
    workspaceSystemTopicName: eventGrid.outputs.workspaceSystemTopicName
  }
}

// azd stores these in .azure/<env>/.env; the postdeploy hook reads them, and `eval "$(azd env get-values)"` points
// `perennial` at this deployment (PERENNIAL_HOST_URL for the API commands, AzureWebJobsStorage__accountName for
// `perennial upload`, signed in as you): infra/README.md.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output SERVICE_PERENNIAL_BASE_URL string = 'https://${functionApp.outputs.defaultHostName}'
output PERENNIAL_HOST_URL string = 'https://${functionApp.outputs.defaultHostName}'
output AzureWebJobsStorage__accountName string = storage.outputs.name
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZUREML_WORKSPACE_NAME string = ml.outputs.workspaceName
output AZUREML_COMPUTE_NAME string = ml.outputs.computeName
output PERENNIAL_EVENTGRID_ENDPOINT string = eventGrid.outputs.customTopicEndpoint
output EVENTGRID_CUSTOM_TOPIC_NAME string = eventGrid.outputs.customTopicName
output EVENTGRID_STORAGE_TOPIC_NAME string = eventGrid.outputs.storageSystemTopicName
output EVENTGRID_WORKSPACE_TOPIC_NAME string = eventGrid.outputs.workspaceSystemTopicName
output EVENTGRID_IDENTITY_NAME string = identities.outputs.eventGridIdentityName
