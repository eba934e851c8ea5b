package fleetapi

// The API description fleet published at /fleet/v1/discovery (Google's
// discovery format), for clients generated from it.

import "net/http"

// discoveryDoc describes this API in the Google discovery format fleet
// published at /fleet/v1/discovery (written for Pith, same resources).
const discoveryDoc = `{
  "kind": "discovery#restDescription",
  "discoveryVersion": "v1",
  "id": "fleet:v1",
  "name": "schema",
  "version": "v1",
  "title": "fleet API (served by Pith)",
  "description": "fleet-compatible cluster scheduler API",
  "protocol": "rest",
  "baseUrl": "$ENDPOINT/fleet/v1/",
  "basePath": "/fleet/v1/",
  "rootUrl": "$ENDPOINT/",
  "servicePath": "fleet/v1/",
  "batchPath": "batch",
  "parameters": {},
  "auth": {},
  "schemas": {
    "Machine": {"id": "Machine", "type": "object", "properties": {
      "id": {"type": "string"},
      "primaryIP": {"type": "string"},
      "metadata": {"type": "object", "properties": {}, "additionalProperties": {"type": "string"}}}},
    "MachinePage": {"id": "MachinePage", "type": "object", "properties": {
      "machines": {"type": "array", "items": {"$ref": "Machine"}},
      "nextPageToken": {"type": "string"}}},
    "UnitOption": {"id": "UnitOption", "type": "object", "properties": {
      "section": {"type": "string"}, "name": {"type": "string"}, "value": {"type": "string"}}},
    "Unit": {"id": "Unit", "type": "object", "properties": {
      "name": {"type": "string"},
      "options": {"type": "array", "items": {"$ref": "UnitOption"}},
      "desiredState": {"type": "string", "enum": ["inactive", "loaded", "launched"]},
      "currentState": {"type": "string", "enum": ["inactive", "loaded", "launched"]},
      "machineID": {"type": "string"}}},
    "UnitPage": {"id": "UnitPage", "type": "object", "properties": {
      "units": {"type": "array", "items": {"$ref": "Unit"}},
      "nextPageToken": {"type": "string"}}},
    "UnitState": {"id": "UnitState", "type": "object", "properties": {
      "name": {"type": "string"}, "hash": {"type": "string"}, "machineID": {"type": "string"},
      "systemdLoadState": {"type": "string"}, "systemdActiveState": {"type": "string"},
      "systemdSubState": {"type": "string"}}},
    "UnitStatePage": {"id": "UnitStatePage", "type": "object", "properties": {
      "states": {"type": "array", "items": {"$ref": "UnitState"}},
      "nextPageToken": {"type": "string"}}}
  },
  "resources": {
    "Machines": {"methods": {
      "List": {"id": "fleet.Machine.List", "httpMethod": "GET", "path": "machines",
        "parameters": {"nextPageToken": {"type": "string", "location": "query"}},
        "response": {"$ref": "MachinePage"}}}},
    "Units": {"methods": {
      "List": {"id": "fleet.Unit.List", "httpMethod": "GET", "path": "units",
        "parameters": {"nextPageToken": {"type": "string", "location": "query"}},
        "response": {"$ref": "UnitPage"}},
      "Get": {"id": "fleet.Unit.Get", "httpMethod": "GET", "path": "units/{unitName}",
        "parameters": {"unitName": {"type": "string", "location": "path", "required": true}},
        "parameterOrder": ["unitName"], "response": {"$ref": "Unit"}},
      "Delete": {"id": "fleet.Unit.Delete", "httpMethod": "DELETE", "path": "units/{unitName}",
        "parameters": {"unitName": {"type": "string", "location": "path", "required": true}},
        "parameterOrder": ["unitName"]},
      "Set": {"id": "fleet.Unit.Set", "httpMethod": "PUT", "path": "units/{unitName}",
        "parameters": {"unitName": {"type": "string", "location": "path", "required": true}},
        "parameterOrder": ["unitName"], "request": {"$ref": "Unit"}}}},
    "UnitState": {"methods": {
      "List": {"id": "fleet.UnitState.List", "httpMethod": "GET", "path": "state",
        "parameters": {
          "nextPageToken": {"type": "string", "location": "query"},
          "unitName": {"type": "string", "location": "query"},
          "machineID": {"type": "string", "location": "query"}},
        "response": {"$ref": "UnitStatePage"}},
      "Get": {"id": "fleet.UnitState.Get", "httpMethod": "GET", "path": "state/{unitName}",
        "parameters": {"unitName": {"type": "string", "location": "path", "required": true}},
        "parameterOrder": ["unitName"], "response": {"$ref": "UnitState"}}}}
  }
}
`

func discovery(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		sendError(w, http.StatusMethodNotAllowed, nil)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte(discoveryDoc))
}
