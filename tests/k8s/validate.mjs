// Validates Kubernetes resources with the schema validators of the npm packages kubernetes-models
// (the Kubernetes API), @kubernetes-models/keda and @kubernetes-models/strimzi-kafka-operator
// (generated from KEDA's and Strimzi's CRDs). Input on stdin: a JSON list of resources. Output:
// a JSON list, one entry per resource: null when valid, else the validator's message.
import { readFileSync } from "node:fs";

const MODELS = {
  "kafka.strimzi.io/v1beta2": (kind) =>
    `@kubernetes-models/strimzi-kafka-operator/kafka.strimzi.io/v1beta2/${kind}`,
  "keda.sh/v1alpha1": (kind) => `@kubernetes-models/keda/keda.sh/v1alpha1/${kind}`,
  "apps/v1": (kind) => `kubernetes-models/apps/v1/${kind}`,
  v1: (kind) => `kubernetes-models/v1/${kind}`,
};

const resources = JSON.parse(readFileSync(0, "utf8"));
const results = [];
for (const resource of resources) {
  const module = MODELS[resource.apiVersion];
  if (!module) {
    results.push(`no validator for apiVersion ${resource.apiVersion}`);
    continue;
  }
  try {
    const Model = (await import(module(resource.kind)))[resource.kind];
    new Model(resource).validate();
    results.push(null);
  } catch (error) {
    results.push(String(error.message || error));
  }
}
process.stdout.write(JSON.stringify(results));
