// Key Vault in RBAC mode (no access policies): the Azure ML workspace keeps its secrets here.
// The app has no role on it (rbac.bicep): Perennial stores and reads no secret, every service is
// reached with a managed identity.

@description('Azure region of the vault.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Key Vault name (3-24 characters).')
@minLength(3)
@maxLength(24)
param name string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    // Purge protection stays off so `azd down --purge` can remove the vault for good.
    publicNetworkAccess: 'Enabled'
  }
}

output id string = vault.id
output name string = vault.name
