// Command kstatus-compute prints the kstatus health of Kubernetes objects, as computed by
// sigs.k8s.io/cli-utils/pkg/kstatus/status (the library behind Flux, kpt and Config Sync).
//
// Input on stdin: one JSON object, a JSON array of objects, or a v1 List.
// Output on stdout: a JSON array with one {"kind", "name", "status", "message"} per object, in order.
// Exit status 1 with a message on stderr when the input does not parse or an object cannot be evaluated.
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

type health struct {
	Kind    string `json:"kind"`
	Name    string `json:"name"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

// objects decodes the input with integers kept as int64 (kstatus reads metadata.generation as one).
func objects(raw []byte) ([]map[string]interface{}, error) {
	var list []map[string]interface{}
	if err := utiljson.Unmarshal(raw, &list); err == nil {
		return list, nil
	}
	var one map[string]interface{}
	if err := utiljson.Unmarshal(raw, &one); err != nil {
		return nil, fmt.Errorf("stdin is neither a JSON object nor an array of objects: %w", err)
	}
	if items, ok := one["items"].([]interface{}); ok && one["kind"] == "List" {
		for i, item := range items {
			obj, ok := item.(map[string]interface{})
			if !ok {
				return nil, fmt.Errorf("items[%d] is not an object", i)
			}
			list = append(list, obj)
		}
		return list, nil
	}
	return []map[string]interface{}{one}, nil
}

func run(in io.Reader, out io.Writer) error {
	raw, err := io.ReadAll(in)
	if err != nil {
		return err
	}
	objs, err := objects(raw)
	if err != nil {
		return err
	}
	results := make([]health, 0, len(objs))
	for i, obj := range objs {
		u := &unstructured.Unstructured{Object: obj}
		res, err := status.Compute(u)
		if err != nil {
			return fmt.Errorf("object %d (%s %s): %w", i, u.GetKind(), u.GetName(), err)
		}
		results = append(results, health{Kind: u.GetKind(), Name: u.GetName(), Status: res.Status.String(), Message: res.Message})
	}
	return json.NewEncoder(out).Encode(results)
}

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus-compute:", err)
		os.Exit(1)
	}
}
