// The Azure ML side: the workspace with its dependencies (its own storage account, the
// shared Key Vault and Application Insights, a container registry), the GPU training cluster,
// and the two Azure ML environments the app names in every job and deployment
// (perennial-train@latest, perennial-score@latest). No online endpoint is declared here: the app
// creates each model's endpoint (Entra ID token auth) before its first deployment and owns its
// traffic. Declared here, every `azd provision` would PUT the endpoint without a traffic map, and
// Azure ML zeroes the split of an endpoint updated that way: the champion would stop serving.

@description('Azure region of the Azure ML resources.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Azure ML workspace name.')
param workspaceName string

@description('Name of the workspace\'s own storage account (it cannot be changed after creation).')
@minLength(3)
@maxLength(24)
param storageAccountName string

@description('Container registry name (5-50 letters and digits) for training and serving images.')
@minLength(5)
@maxLength(50)
param containerRegistryName string

@description('Resource id of the Key Vault the workspace keeps its secrets in.')
param keyVaultId string

@description('Resource id of the Application Insights component the workspace reports to.')
param applicationInsightsId string

@description('Compute cluster name; must equal training.compute in the model specs.')
param computeName string

@description('VM size of the GPU cluster nodes.')
param computeVmSize string

@description('Dedicated, or LowPriority (much cheaper; nodes may be pre-empted and jobs resume from checkpoints).')
@allowed([
  'Dedicated'
  'LowPriority'
])
param computeVmPriority string

@description('Most nodes the cluster may scale out to.')
@minValue(1)
param computeMaxNodes int

@description('Seconds an idle node is kept before the cluster scales back to zero.')
@minValue(60)
param computeIdleSeconds int

@description('Resource id of the user-assigned identity training jobs run as.')
param computeIdentityId string

resource mlStorage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    // Identity-based datastores (systemDatastoresAuthMode below) make account keys unnecessary.
    allowSharedKeyAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' = {
  name: containerRegistryName
  location: location
  tags: tags
  sku: {
    name: 'Basic'
  }
  properties: {
    // Images are pulled with Entra ID (AcrPull), never with the admin password.
    adminUserEnabled: false
    publicNetworkAccess: 'Enabled'
  }
}

resource workspace 'Microsoft.MachineLearningServices/workspaces@2024-10-01' = {
  name: workspaceName
  location: location
  tags: tags
  sku: {
    name: 'Basic'
    tier: 'Basic'
  }
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    friendlyName: workspaceName
    description: 'Perennial continuous training'
    storageAccount: mlStorage.id
    keyVault: keyVaultId
    applicationInsights: applicationInsightsId
    containerRegistry: registry.id
    // The default datastores are reached with Entra ID, since the account has no keys.
    systemDatastoresAuthMode: 'identity'
    publicNetworkAccess: 'Enabled'
    v1LegacyMode: false
  }
}

resource gpuCluster 'Microsoft.MachineLearningServices/workspaces/computes@2024-10-01' = {
  parent: workspace
  name: computeName
  location: location
  tags: tags
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${computeIdentityId}': {}
    }
  }
  properties: {
    computeType: 'AmlCompute'
    description: 'GPU training cluster; scales to zero when idle'
    disableLocalAuth: true
    properties: {
      vmSize: computeVmSize
      vmPriority: computeVmPriority
      osType: 'Linux'
      // Zero nodes at rest: the cluster costs nothing until a training job is queued.
      scaleSettings: {
        minNodeCount: 0
        maxNodeCount: computeMaxNodes
        nodeIdleTimeBeforeScaleDown: 'PT${computeIdleSeconds}S'
      }
      enableNodePublicIp: true
      remoteLoginPortPublicAccess: 'Disabled'
    }
  }
}

// The environments shared/platform/azureml.py asks for by name@latest: one conda file
// (training_jobs/environment.yml: torch, mlflow, azureml-inference-server-http for score.py, the
// data collector) on two Azure ML base images: CUDA for the GPU cluster's jobs, CPU for the
// online deployments (Standard_DS3_v2 by default). A version is immutable, so its name is a hash
// of image + conda file: an edited file becomes a new version, which @latest (most recently
// created) then resolves to, and an unchanged one redeploys as a no-op. (Reverting the file to an
// earlier content reuses that older version, which is then not the newest: edit it anew instead.)
var condaFile = loadTextContent('../../training_jobs/environment.yml')
var trainingImage = 'mcr.microsoft.com/azureml/openmpi4.1.0-cuda11.8-cudnn8-ubuntu22.04:latest'
var scoringImage = 'mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest'

resource trainingEnvironment 'Microsoft.MachineLearningServices/workspaces/environments@2024-10-01' = {
  parent: workspace
  name: 'perennial-train'
  properties: {
    description: 'Training and evaluation jobs (training_jobs/train.py, evaluate.py) on the GPU cluster'
  }
}

resource trainingEnvironmentVersion 'Microsoft.MachineLearningServices/workspaces/environments/versions@2024-10-01' = {
  parent: trainingEnvironment
  name: uniqueString(trainingImage, condaFile)
  properties: {
    description: 'CUDA base image + training_jobs/environment.yml'
    image: trainingImage
    condaFile: condaFile
    osType: 'Linux'
  }
}

resource scoringEnvironment 'Microsoft.MachineLearningServices/workspaces/environments@2024-10-01' = {
  parent: workspace
  name: 'perennial-score'
  properties: {
    description: 'Online deployments: training_jobs/score.py under the Azure ML inference server'
  }
}

resource scoringEnvironmentVersion 'Microsoft.MachineLearningServices/workspaces/environments/versions@2024-10-01' = {
  parent: scoringEnvironment
  name: uniqueString(scoringImage, condaFile)
  properties: {
    description: 'CPU base image + training_jobs/environment.yml'
    image: scoringImage
    condaFile: condaFile
    osType: 'Linux'
  }
}

output workspaceId string = workspace.id
output workspaceName string = workspace.name
output storageAccountId string = mlStorage.id
output storageAccountName string = mlStorage.name
output containerRegistryId string = registry.id
output containerRegistryName string = registry.name
output computeName string = gpuCluster.name
