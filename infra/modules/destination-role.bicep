// The data sender role for an Event Grid topic's system identity on one delivery destination
// (deliveryWithResourceIdentity), in the destination's own resource group.
//
// Roles (https://learn.microsoft.com/azure/role-based-access-control/built-in-roles):
//   EventHub          Azure Event Hubs Data Sender            on the event hub
//   ServiceBusQueue   Azure Service Bus Data Sender           on the queue
//   ServiceBusTopic   Azure Service Bus Data Sender           on the topic
//   StorageQueue      Storage Queue Data Message Sender       on the storage account

@description('Principal id of the topic\'s system-assigned identity.')
param principalId string

@description('Resource id of the topic (names the assignment).')
param topicId string

@description('ARM endpointType of the destination.')
@allowed(['EventHub', 'ServiceBusQueue', 'ServiceBusTopic', 'StorageQueue'])
param endpointType string

@description('Resource id of the destination: the event hub, queue or topic, or the storage account.')
param destinationId string

var roles = {
  eventHubsDataSender: '2b629674-e913-4c01-ae53-ef4638d8f975'
  serviceBusDataSender: '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
  storageQueueDataMessageSender: 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a'
}

// /subscriptions/{s}/resourceGroups/{rg}/providers/{ns}/{type}/{name}[/{childType}/{child}]
var parts = split(destinationId, '/')
var parentName = length(parts) > 8 ? parts[8] : 'none'
var childName = length(parts) > 10 ? parts[10] : 'none'

resource eventHubNamespace 'Microsoft.EventHub/namespaces@2024-01-01' existing = if (endpointType == 'EventHub') {
  name: parentName
}

resource eventHub 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' existing = if (endpointType == 'EventHub') {
  parent: eventHubNamespace
  name: childName
}

resource serviceBusNamespace 'Microsoft.ServiceBus/namespaces@2021-11-01' existing = if (startsWith(endpointType, 'ServiceBus')) {
  name: parentName
}

resource serviceBusQueue 'Microsoft.ServiceBus/namespaces/queues@2021-11-01' existing = if (endpointType == 'ServiceBusQueue') {
  parent: serviceBusNamespace
  name: childName
}

resource serviceBusTopic 'Microsoft.ServiceBus/namespaces/topics@2021-11-01' existing = if (endpointType == 'ServiceBusTopic') {
  parent: serviceBusNamespace
  name: childName
}

resource storageAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = if (endpointType == 'StorageQueue') {
  name: parentName
}

resource eventHubSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (endpointType == 'EventHub') {
  name: guid(destinationId, topicId, roles.eventHubsDataSender)
  scope: eventHub
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventHubsDataSender)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource serviceBusQueueSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (endpointType == 'ServiceBusQueue') {
  name: guid(destinationId, topicId, roles.serviceBusDataSender)
  scope: serviceBusQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataSender)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource serviceBusTopicSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (endpointType == 'ServiceBusTopic') {
  name: guid(destinationId, topicId, roles.serviceBusDataSender)
  scope: serviceBusTopic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataSender)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource storageQueueSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (endpointType == 'StorageQueue') {
  name: guid(destinationId, topicId, roles.storageQueueDataMessageSender)
  scope: storageAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataMessageSender)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
