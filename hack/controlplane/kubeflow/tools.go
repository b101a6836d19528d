// Package kubeflow pins the Kubeflow training-operator module so its PyTorchJob CRD manifest
// can be read from the Go module cache at test time.
package kubeflow
