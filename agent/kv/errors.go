package kv

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
)

// etcd v2 error codes. The numbers, messages and HTTP statuses are part of the
// wire protocol: clients (etcdctl, client/v2, confd, locksmith) switch on them.
const (
	EcodeKeyNotFound    = 100
	EcodeTestFailed     = 101
	EcodeNotFile        = 102
	EcodeNotDir         = 104
	EcodeNodeExist      = 105
	EcodeKeyIsPreserved = 106
	EcodeRootROnly      = 107
	EcodeDirNotEmpty    = 108
	EcodeUnauthorized   = 110

	EcodeValueRequired        = 200
	EcodePrevValueRequired    = 201
	EcodeTTLNaN               = 202
	EcodeIndexNaN             = 203
	EcodeValueOrTTLRequired   = 204
	EcodeTimeoutNaN           = 205
	EcodeNameRequired         = 206
	EcodeIndexOrValueRequired = 207
	EcodeIndexValueMutex      = 208
	EcodeInvalidField         = 209
	EcodeInvalidForm          = 210
	EcodeRefreshValue         = 211
	EcodeRefreshTTLRequired   = 212

	EcodeRaftInternal = 300
	EcodeLeaderElect  = 301

	EcodeWatcherCleared    = 400
	EcodeEventIndexCleared = 401
)

var errorMessages = map[int]string{
	EcodeKeyNotFound:    "Key not found",
	EcodeTestFailed:     "Compare failed",
	EcodeNotFile:        "Not a file",
	EcodeNotDir:         "Not a directory",
	EcodeNodeExist:      "Key already exists",
	EcodeKeyIsPreserved: "The prefix of given key is a keyword in etcd",
	EcodeRootROnly:      "Root is read only",
	EcodeDirNotEmpty:    "Directory not empty",
	EcodeUnauthorized:   "The request requires user authentication",

	EcodeValueRequired:        "Value is Required in POST form",
	EcodePrevValueRequired:    "PrevValue is Required in POST form",
	EcodeTTLNaN:               "The given TTL in POST form is not a number",
	EcodeIndexNaN:             "The given index in POST form is not a number",
	EcodeValueOrTTLRequired:   "Value or TTL is required in POST form",
	EcodeTimeoutNaN:           "The given timeout in POST form is not a number",
	EcodeNameRequired:         "Name is required in POST form",
	EcodeIndexOrValueRequired: "Index or value is required",
	EcodeIndexValueMutex:      "Index and value cannot both be specified",
	EcodeInvalidField:         "Invalid field",
	EcodeInvalidForm:          "Invalid POST form",
	EcodeRefreshValue:         "Value provided on refresh",
	EcodeRefreshTTLRequired:   "A TTL must be provided on refresh",

	EcodeRaftInternal: "Raft Internal Error",
	EcodeLeaderElect:  "During Leader Election",

	EcodeWatcherCleared:    "watcher is cleared due to etcd recovery",
	EcodeEventIndexCleared: "The event in requested index is outdated and cleared",
}

// Codes not listed answer 400 Bad Request, as in etcd.
var errorStatus = map[int]int{
	EcodeKeyNotFound:  http.StatusNotFound,
	EcodeNotFile:      http.StatusForbidden,
	EcodeDirNotEmpty:  http.StatusForbidden,
	EcodeUnauthorized: http.StatusUnauthorized,
	EcodeTestFailed:   http.StatusPreconditionFailed,
	EcodeNodeExist:    http.StatusPreconditionFailed,
	EcodeRaftInternal: http.StatusInternalServerError,
	EcodeLeaderElect:  http.StatusInternalServerError,
}

// Error is an etcd v2 error, serialised exactly as etcd does.
type Error struct {
	ErrorCode int    `json:"errorCode"`
	Message   string `json:"message"`
	Cause     string `json:"cause,omitempty"`
	Index     uint64 `json:"index"`
}

// NewError returns the etcd error for code with its standard message.
func NewError(code int, cause string, index uint64) *Error {
	return &Error{ErrorCode: code, Message: errorMessages[code], Cause: cause, Index: index}
}

func (e *Error) Error() string { return e.Message + " (" + e.Cause + ")" }

// StatusCode is the HTTP status etcd answers with for this error.
func (e *Error) StatusCode() int {
	if s, ok := errorStatus[e.ErrorCode]; ok {
		return s
	}
	return http.StatusBadRequest
}

// WriteTo writes the error as etcd does: X-Etcd-Index, JSON body, newline.
func (e *Error) WriteTo(w http.ResponseWriter) {
	w.Header().Add("X-Etcd-Index", strconv.FormatUint(e.Index, 10))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.StatusCode())
	b, _ := json.Marshal(e)
	b = append(b, '\n')
	_, _ = w.Write(b)
}

func compareFailCause(n *node, valueOK, indexOK bool, prevValue string, prevIndex uint64) string {
	switch {
	case !indexOK && valueOK:
		return fmt.Sprintf("[%v != %v]", prevIndex, n.modifiedIndex)
	case indexOK && !valueOK:
		return fmt.Sprintf("[%v != %v]", prevValue, n.value)
	default:
		return fmt.Sprintf("[%v != %v] [%v != %v]", prevValue, n.value, prevIndex, n.modifiedIndex)
	}
}
