// The workspace's Event Grid system topic, in the workspace's own region.
//
// A system topic lives in the region of its source, not the app's. main.bicep passes the
// workspace's location, read from the workspace itself (an existing resource's location is a
// runtime value: a module parameter can take it, a resource's location in main.bicep cannot).

@description('Name of the system topic (a workspace has at most one).')
param name string

@description('Region of the workspace.')
param location string

@description('Resource id of the Azure ML workspace.')
param workspaceId string

param tags object = {}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' = {
  name: name
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned' // dead letters and identity-based deliveries, with Entra ID
  }
  properties: {
    source: workspaceId
    topicType: 'Microsoft.MachineLearningServices.Workspaces'
  }
}

output id string = systemTopic.id
output principalId string = systemTopic.identity.principalId
