// The Function App on the Flex Consumption plan: it scales to zero and bills per execution.
// Every connection is identity-based (the app's user-assigned identity); the app settings
// below are exactly the ones shared/settings.py reads, plus the two the Functions host needs
// for Entra-authenticated Application Insights (tests/infra checks both directions).

@description('Azure region of the plan and the app.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Function App name (also its host name).')
param name string

@description('Flex Consumption plan name.')
param planName string

@description('azd service name in azure.yaml; azd finds the app by this tag.')
param serviceName string

@description('Resource id of the app\'s user-assigned identity.')
param identityId string

@description('Client id of the app\'s user-assigned identity.')
param identityClientId string

@description('App storage account name.')
param storageAccountName string

@description('Blob container the plan deploys the app package from.')
param deploymentContainerName string

@description('Application Insights component the host reports to (with Entra ID auth).')
param applicationInsightsName string

@description('Azure ML workspace name the app drives.')
param workspaceName string

@description('Endpoint URL of Perennial\'s Event Grid custom topic.')
param eventGridEndpoint string

@description('Appended to every online endpoint name as -<suffix> (endpoint names are unique within a region).')
@minLength(1)
@maxLength(6)
param endpointSuffix string

@description('Memory of each instance in MB (2048 or 4096).')
@allowed([
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Most instances the app may scale out to.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': serviceName
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }

  // The only place app settings are set (a config/appsettings PUT replaces them all).
  // FUNCTIONS_WORKER_RUNTIME is deliberately absent: Flex Consumption rejects it.
  resource appSettings 'config' = {
    name: 'appsettings'
    properties: {
      // Functions host + Durable Functions + Perennial's containers and tables: one account.
      AzureWebJobsStorage__credential: 'managedidentity'
      AzureWebJobsStorage__clientId: identityClientId
      AzureWebJobsStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
      AzureWebJobsStorage__queueServiceUri: storage.properties.primaryEndpoints.queue
      AzureWebJobsStorage__tableServiceUri: storage.properties.primaryEndpoints.table
      // Host platform settings: Application Insights with Entra ID auth (local auth is off).
      // Not a secret: with local auth off, ingestion also needs the identity's Entra ID token.
      APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString
      APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
      // DefaultAzureCredential picks the user-assigned identity by this client id.
      AZURE_CLIENT_ID: identityClientId
      PERENNIAL_PLATFORM: 'azureml'
      PERENNIAL_MODELS_DIR: 'models'
      AZURE_SUBSCRIPTION_ID: subscription().subscriptionId
      AZURE_RESOURCE_GROUP: resourceGroup().name
      AZUREML_WORKSPACE_NAME: workspaceName
      PERENNIAL_EVENTGRID_ENDPOINT: eventGridEndpoint
      // The schedule timer (age, live performance, input drift per model): hourly, on the hour (UTC).
      PERENNIAL_RETRAIN_SCHEDULE: '0 0 * * * *'
      // Appended to every model's endpoint name: Azure ML endpoint names are unique within a region, across tenants.
      PERENNIAL_ENDPOINT_SUFFIX: endpointSuffix
    }
  }

  // No publishing passwords: azd deploys with Entra ID to the deployment container.
  resource ftpCredentials 'basicPublishingCredentialsPolicies' = {
    name: 'ftp'
    properties: {
      allow: false
    }
  }

  resource scmCredentials 'basicPublishingCredentialsPolicies' = {
    name: 'scm'
    properties: {
      allow: false
    }
  }
}

output id string = site.id
output name string = site.name
output defaultHostName string = site.properties.defaultHostName
