#!/usr/bin/env bash
# Exercise a running node over REST with curl: analysis (lowercase + asciifolding,
# edge_ngram), fuzziness, term/phrase suggesters, _bulk with refresh=wait_for, and an
# atomic alias swap. Uses throwaway indices smoke-cars-* and the alias smoke-cars.
# Usage: services/opensearch/smoke.sh   (OPENSEARCH_PORT, default 9200)
set -euo pipefail
H="127.0.0.1:${OPENSEARCH_PORT:-9200}"
J='Content-Type: application/json'
fail=0
check() {  # check NAME EXPECTED_SUBSTRING JSON
  if grep -qF -- "$2" <<<"$3"; then echo "ok   $1"; else echo "FAIL $1: expected $2 in: $3"; fail=1; fi
}

for i in smoke-cars-1 smoke-cars-2; do curl -sS -o /dev/null -X DELETE "$H/$i?ignore_unavailable=true"; done

index_body='{
  "settings": {"number_of_shards": 1, "number_of_replicas": 0,
    "analysis": {
      "filter": {"prefixes": {"type": "edge_ngram", "min_gram": 2, "max_gram": 15}},
      "analyzer": {
        "folding": {"type": "custom", "tokenizer": "standard", "filter": ["lowercase", "asciifolding"]},
        "folding_prefix": {"type": "custom", "tokenizer": "standard",
                           "filter": ["lowercase", "asciifolding", "prefixes"]}}}},
  "mappings": {"properties": {
    "title": {"type": "text", "analyzer": "folding",
              "fields": {"prefix": {"type": "text", "analyzer": "folding_prefix", "search_analyzer": "folding"}}}}}}'
for i in smoke-cars-1 smoke-cars-2; do
  check "create $i" '"acknowledged":true' "$(curl -sS -X PUT "$H/$i" -H "$J" -d "$index_body")"
done
curl -sS -o /dev/null -X DELETE "$H/smoke-defaults?ignore_unavailable=true"
curl -sS -o /dev/null -X PUT "$H/smoke-defaults"
check "default replicas 0 (cluster.default_number_of_replicas)" '"index.number_of_replicas":"0"' \
  "$(curl -sS "$H/smoke-defaults/_settings?flat_settings=true")"
curl -sS -o /dev/null -X DELETE "$H/smoke-defaults"
check "edge_ngram tokenizer (ad hoc analyzer)" '"token":"oct"' "$(curl -sS "$H/_analyze" -H "$J" -d '{
  "tokenizer": {"type": "edge_ngram", "min_gram": 2, "max_gram": 10, "token_chars": ["letter"]},
  "filter": ["lowercase", "asciifolding"], "text": "Škoda Octavia"}')"

bulk() {
  printf '%s\n' \
    "{\"index\":{\"_index\":\"$1\",\"_id\":\"1\"}}" '{"title":"Aurora GT"}' \
    "{\"index\":{\"_index\":\"$1\",\"_id\":\"2\"}}" '{"title":"Škoda Octavia Family Estate"}' \
    "{\"index\":{\"_index\":\"$1\",\"_id\":\"3\"}}" '{"title":"Boreal Estate"}' \
    "{\"index\":{\"_index\":\"$1\",\"_id\":\"4\"}}" '{"title":"Citroën Berlingo"}' \
  | curl -sS -X POST "$H/_bulk?refresh=wait_for" -H 'Content-Type: application/x-ndjson' --data-binary @-
}
check "_bulk refresh=wait_for" '"errors":false' "$(bulk smoke-cars-1)"
search() { curl -sS "$H/$1/_search?filter_path=hits.hits._source.title,suggest.*.options.text" -H "$J" -d "$2"; }
check "fuzzy aurra -> Aurora" 'Aurora GT' "$(search smoke-cars-1 '{"query":{"match":{"title":{"query":"aurra","fuzziness":"AUTO"}}}}')"
check "folding skoda -> Škoda" 'Škoda Octavia' "$(search smoke-cars-1 '{"query":{"match":{"title":"skoda"}}}')"
check "folding citroen -> Citroën" 'Citroën' "$(search smoke-cars-1 '{"query":{"match":{"title":"CITROEN"}}}')"
nohit() {  # nohit NAME JSON: the query must find nothing (a control for the check after it)
  if grep -qF '"hits"' <<<"$2"; then echo "FAIL $1: expected no hit, got: $2"; fail=1; else echo "ok   $1"; fi
}
nohit "control: aurra without fuzziness finds nothing" "$(search smoke-cars-1 '{"query":{"match":{"title":"aurra"}}}')"
nohit "control: octa on the plain field finds nothing" "$(search smoke-cars-1 '{"query":{"match":{"title":"octa"}}}')"
check "prefix octa -> Octavia (edge_ngram)" 'Octavia' "$(search smoke-cars-1 '{"query":{"match":{"title.prefix":"octa"}}}')"
check "term suggester aurra -> aurora" '"text":"aurora"' "$(search smoke-cars-1 '{"size":0,"suggest":{"s":{"text":"aurra","term":{"field":"title"}}}}')"
check "phrase suggester -> skoda octavia" '"text":"skoda octavia"' "$(search smoke-cars-1 '{"size":0,"suggest":{"s":{"text":"skoda octvia","phrase":{"field":"title","confidence":0}}}}')"

# alias swap: smoke-cars points at -1, then atomically at -2 (which holds one doc)
curl -sS -o /dev/null -X POST "$H/_aliases" -H "$J" -d '{"actions":[{"add":{"index":"smoke-cars-1","alias":"smoke-cars"}}]}'
curl -sS -o /dev/null -X PUT "$H/smoke-cars-2/_doc/9?refresh=wait_for" -H "$J" -d '{"title":"Aurora Nova"}'
check "alias before swap" '"smoke-cars-1"' "$(curl -sS "$H/_alias/smoke-cars")"
check "atomic swap" '"acknowledged":true' "$(curl -sS -X POST "$H/_aliases" -H "$J" -d '{"actions":[
  {"remove":{"index":"smoke-cars-1","alias":"smoke-cars"}},{"add":{"index":"smoke-cars-2","alias":"smoke-cars"}}]}')"
after="$(curl -sS "$H/_alias/smoke-cars")"
check "alias after swap" '"smoke-cars-2"' "$after"
if grep -qF smoke-cars-1 <<<"$after"; then echo "FAIL alias still on smoke-cars-1"; fail=1; fi
check "search through alias" 'Aurora Nova' "$(search smoke-cars '{"query":{"match":{"title":{"query":"aurra","fuzziness":"AUTO"}}}}')"

[ -n "${KEEP:-}" ] || for i in smoke-cars-1 smoke-cars-2; do curl -sS -o /dev/null -X DELETE "$H/$i"; done
[ "$fail" = 0 ] && echo "search smoke: all checks passed" || { echo "search smoke: FAILED"; exit 1; }
