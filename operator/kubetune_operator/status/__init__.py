"""The operator's side of status: observed children read into the lifecycle's observations (launchers,
deployments), and the derived status written back (merge patch, Events). The derivation is kubetune.lifecycle's."""
