// The user-assigned identities. Each workload gets its own so that each can be granted only
// what it needs (see rbac.bicep): the Function App, the GPU cluster's training jobs, and
// Event Grid (which needs its own identity only to write undeliverable events to storage).

@description('Azure region of the identities.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Name of the Function App identity.')
param appIdentityName string

@description('Name of the identity the GPU cluster runs training jobs as.')
param computeIdentityName string

@description('Name of the identity Event Grid uses to dead-letter undeliverable events.')
param eventGridIdentityName string

resource appIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: appIdentityName
  location: location
  tags: tags
}

resource computeIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: computeIdentityName
  location: location
  tags: tags
}

resource eventGridIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: eventGridIdentityName
  location: location
  tags: tags
}

output appIdentityId string = appIdentity.id
output appIdentityName string = appIdentity.name
output appClientId string = appIdentity.properties.clientId
output appPrincipalId string = appIdentity.properties.principalId
output computeIdentityId string = computeIdentity.id
output computePrincipalId string = computeIdentity.properties.principalId
output eventGridIdentityId string = eventGridIdentity.id
output eventGridIdentityName string = eventGridIdentity.name
output eventGridPrincipalId string = eventGridIdentity.properties.principalId
