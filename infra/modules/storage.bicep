// The app's storage account. One account serves the Functions host (AzureWebJobsStorage:
// blobs for leases and the Flex deployment package, queues and tables for Durable Functions'
// task hub) and Perennial's own containers and tables, as shared/settings.py expects.
// Access is identity-only: shared keys are off, so no connection string exists to leak.

@description('Azure region of the storage account.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Storage account name (3-24 lowercase letters and digits).')
@minLength(3)
@maxLength(24)
param name string

@description('Blob container the Flex Consumption plan deploys the app package to.')
param deploymentContainerName string

@description('Days after it was written that a kept validation verdict (the verdicts container) is deleted (main.bicep says why its default).')
param verdictRetentionDays int

// Kept validation verdicts have a container of their own so that one lifecycle rule (below) can bound them: rules
// match name prefixes only, and manifests/ also holds the run manifests, which are lineage and never deleted.
var verdictsContainerName = 'verdicts'
// Must equal shared.storage.CONTAINERS and shared.registry.TABLES: tests/infra checks both.
var containerNames = [
  'landing'
  'quarantine'
  'manifests'
  'payloads'
  'deadletter'
  'feedback'
  verdictsContainerName
]
var tableNames = [
  'PerennialRuns'
  'PerennialModels'
]

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      // Event Grid and Azure ML reach the account as trusted Azure services.
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }

  resource blobService 'blobServices' = {
    name: 'default'
    properties: {
      deleteRetentionPolicy: {
        enabled: true
        days: 7
      }
    }

    resource deploymentContainer 'containers' = {
      name: deploymentContainerName
      properties: {
        publicAccess: 'None'
      }
    }

    resource containers 'containers' = [
      for containerName in containerNames: {
        name: containerName
        properties: {
          publicAccess: 'None'
        }
      }
    ]
  }

  // Lifecycle management: the account has one policy, named 'default'. Its only rule deletes kept verdicts
  // verdictRetentionDays after they were written (the trailing slash keeps it to the verdicts container, not a
  // 'verdicts-old' beside it); nothing else in the account expires.
  resource lifecycle 'managementPolicies' = {
    name: 'default'
    properties: {
      policy: {
        rules: [
          {
            name: 'expireKeptVerdicts'
            enabled: true
            type: 'Lifecycle'
            definition: {
              filters: {
                blobTypes: [
                  'blockBlob'
                ]
                prefixMatch: [
                  '${verdictsContainerName}/'
                ]
              }
              actions: {
                baseBlob: {
                  delete: {
                    daysAfterModificationGreaterThan: verdictRetentionDays
                  }
                }
              }
            }
          }
        ]
      }
    }
  }

  // Durable Functions creates its task-hub queues itself; the service must exist.
  resource queueService 'queueServices' = {
    name: 'default'
  }

  resource tableService 'tableServices' = {
    name: 'default'

    resource tables 'tables' = [
      for tableName in tableNames: {
        name: tableName
      }
    ]
  }
}

output id string = storage.id
output name string = storage.name
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output queueEndpoint string = storage.properties.primaryEndpoints.queue
output tableEndpoint string = storage.properties.primaryEndpoints.table
output containerNames array = containerNames
