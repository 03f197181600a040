// Event Grid topics. Their subscriptions point at functions, which exist only after the code
// is deployed, so they live in ../wiring.bicep (run by the azd postdeploy hook).
// Both topics carry the Event Grid identity so that subscriptions can dead-letter with it.

@description('Azure region of the topics.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Name of Perennial\'s custom topic (RetrainRequested, ModelPromoted, ...).')
param customTopicName string

@description('Name of the storage account\'s system topic (BlobCreated on the landing container).')
param storageSystemTopicName string

@description('Resource id of the app storage account whose events the system topic carries.')
param storageAccountId string

@description('Name of the Azure ML workspace\'s system topic; empty to not create it.')
param workspaceSystemTopicName string

@description('Resource id of the Azure ML workspace (source of drift and run events).')
param workspaceId string

@description('Resource id of the identity Event Grid dead-letters with.')
param eventGridIdentityId string

var eventGridIdentity = {
  type: 'UserAssigned'
  userAssignedIdentities: {
    '${eventGridIdentityId}': {}
  }
}

resource customTopic 'Microsoft.EventGrid/topics@2025-02-15' = {
  name: customTopicName
  location: location
  tags: tags
  identity: eventGridIdentity
  properties: {
    inputSchema: 'EventGridSchema'
    // Publishers authenticate with Entra ID (EventGrid Data Sender); there is no access key.
    disableLocalAuth: true
    minimumTlsVersionAllowed: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

// An account can have only one system topic; create it here, subscribe in wiring.bicep.
resource storageSystemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' = {
  name: storageSystemTopicName
  location: location
  tags: tags
  identity: eventGridIdentity
  properties: {
    source: storageAccountId
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

resource workspaceSystemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' = if (!empty(workspaceSystemTopicName)) {
  name: empty(workspaceSystemTopicName) ? 'unused' : workspaceSystemTopicName
  location: location
  tags: tags
  identity: eventGridIdentity
  properties: {
    source: workspaceId
    topicType: 'Microsoft.MachineLearningServices.Workspaces'
  }
}

output customTopicId string = customTopic.id
output customTopicName string = customTopic.name
output customTopicEndpoint string = customTopic.properties.endpoint
output storageSystemTopicName string = storageSystemTopic.name
output workspaceSystemTopicName string = empty(workspaceSystemTopicName) ? '' : workspaceSystemTopic.name
