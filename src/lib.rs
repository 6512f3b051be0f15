//! ppio-gpu-operator mirrors PPIO GPU cloud instances into a Kubernetes cluster.
