module kubetune.local/controlplane/kubeflow

go 1.26.8

require github.com/kubeflow/training-operator v1.9.4
