// @shunt/backend-iptables: Istio-compatible REDIRECT and TPROXY interception rules in the pod netns, iptables-legacy or -nft; the universal fallback.
export {};
