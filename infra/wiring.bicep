// Post-deploy wiring: the Event Grid subscriptions that deliver events to the functions.
// An 'AzureFunction' destination must name a function that is already deployed ("Destination
// endpoint not found" otherwise), so this is deployed after the code, by hooks/postdeploy.sh,
// into the resource group main.bicep created. Delivery uses the function's resource id, so no
// function key or webhook URL is ever handled. Every subscription retries, then dead-letters
// to the 'deadletter' container with Event Grid's own identity.

@description('Function App name (AZURE_FUNCTION_APP_NAME from main.bicep).')
param functionAppName string

@description('App storage account name (AZURE_STORAGE_ACCOUNT_NAME).')
param storageAccountName string

@description('Storage system topic name (EVENTGRID_STORAGE_TOPIC_NAME).')
param storageSystemTopicName string

@description('Perennial\'s custom topic name (EVENTGRID_CUSTOM_TOPIC_NAME).')
param customTopicName string

@description('Azure ML workspace system topic name (EVENTGRID_WORKSPACE_TOPIC_NAME); empty to skip.')
param workspaceSystemTopicName string = ''

@description('Name of the identity Event Grid dead-letters with (EVENTGRID_IDENTITY_NAME).')
param eventGridIdentityName string

@description('Delivery attempts before an event is dead-lettered (Event Grid backs off exponentially).')
@minValue(1)
@maxValue(30)
param maxDeliveryAttempts int = 30

@description('Minutes Event Grid keeps retrying an event before dead-lettering it.')
@minValue(1)
@maxValue(1440)
param eventTimeToLiveInMinutes int = 1440

// Function names as registered in function_app.py (tests/infra checks that they exist).
var blobFunctionName = 'on_blob_created'
var alertFunctionName = 'on_alert_event'

// Containers as in shared/storage.py (tests/infra checks them).
var landingContainerName = 'landing'
var deadLetterContainerName = 'deadletter'

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource eventGridIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = {
  name: eventGridIdentityName
}

resource storageSystemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' existing = {
  name: storageSystemTopicName
}

resource customTopic 'Microsoft.EventGrid/topics@2025-02-15' existing = {
  name: customTopicName
}

resource workspaceSystemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' existing = if (!empty(workspaceSystemTopicName)) {
  name: empty(workspaceSystemTopicName) ? 'unused' : workspaceSystemTopicName
}

var retryPolicy = {
  maxDeliveryAttempts: maxDeliveryAttempts
  eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
}

var deadLetter = {
  identity: {
    type: 'UserAssigned'
    userAssignedIdentity: eventGridIdentity.id
  }
  deadLetterDestination: {
    endpointType: 'StorageBlob'
    properties: {
      resourceId: storage.id
      blobContainerName: deadLetterContainerName
    }
  }
}

// New blobs in the landing container -> ingest. Only completed writes: PutBlob, PutBlockList,
// CopyBlob, and FlushWithClose (the last step of a Data Lake upload).
resource blobCreated 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = {
  parent: storageSystemTopic
  name: 'landing-to-ingest'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionApp.id}/functions/${blobFunctionName}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: [
        'Microsoft.Storage.BlobCreated'
      ]
      subjectBeginsWith: '/blobServices/default/containers/${landingContainerName}/'
      advancedFilters: [
        {
          operatorType: 'StringIn'
          key: 'data.api'
          values: [
            'PutBlob'
            'PutBlockList'
            'CopyBlob'
            'FlushWithClose'
          ]
        }
      ]
    }
    retryPolicy: retryPolicy
    deadLetterWithResourceIdentity: deadLetter
  }
}

// Perennial's own events (e.g. Perennial.RetrainRequested from the policy timer) -> alerts.
resource customEvents 'Microsoft.EventGrid/topics/eventSubscriptions@2025-02-15' = {
  parent: customTopic
  name: 'perennial-to-alerts'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionApp.id}/functions/${alertFunctionName}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      advancedFilters: [
        {
          operatorType: 'StringBeginsWith'
          key: 'eventType'
          values: [
            'Perennial.'
          ]
        }
      ]
    }
    retryPolicy: retryPolicy
    deadLetterWithResourceIdentity: deadLetter
  }
}

// Azure ML's own signals -> alerts: data drift only. Not RunStatusChanged: the app follows its jobs by polling
// (docs/events.md), and every status change of every job would be an invocation that only logs a line.
resource workspaceEvents 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = if (!empty(workspaceSystemTopicName)) {
  parent: workspaceSystemTopic
  name: 'azureml-to-alerts'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionApp.id}/functions/${alertFunctionName}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: [
        'Microsoft.MachineLearningServices.DatasetDriftDetected'
      ]
    }
    retryPolicy: retryPolicy
    deadLetterWithResourceIdentity: deadLetter
  }
}

// The Azure ML subscription exists only when the workspace's system topic does.
output subscriptions array = concat([
  blobCreated.name
  customEvents.name
], empty(workspaceSystemTopicName) ? [] : [
  workspaceEvents.name
])
