// kstatus reads Kubernetes objects as JSON on stdin (one object, or a List) and prints,
// one JSON line per object, the status that sigs.k8s.io/cli-utils' kstatus computes for
// it: the library Argo CD's and Flux's health checks follow for custom resources. The
// tests use it to check trustwire's status conditions against an implementation nobody
// here wrote.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Status    string `json:"status"`
	Message   string `json:"message"`
}

func main() {
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(err)
	}
	// apimachinery's decoder: integers as int64, as unstructured's accessors require
	// (encoding/json makes every number a float64, and reading metadata.generation fails).
	var obj map[string]interface{}
	if err := utiljson.Unmarshal(raw, &obj); err != nil {
		fail(err)
	}
	items := []interface{}{obj}
	if list, ok := obj["items"].([]interface{}); ok {
		items = list
	}
	out := json.NewEncoder(os.Stdout)
	for _, item := range items {
		m, ok := item.(map[string]interface{})
		if !ok {
			fail(fmt.Errorf("not an object: %v", item))
		}
		u := &unstructured.Unstructured{Object: m}
		result, err := status.Compute(u)
		if err != nil {
			fail(err)
		}
		_ = out.Encode(verdict{Kind: u.GetKind(), Namespace: u.GetNamespace(), Name: u.GetName(),
			Status: result.Status.String(), Message: result.Message})
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "kstatus:", err)
	os.Exit(1)
}
