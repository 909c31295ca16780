#!/usr/bin/env bash
# Docs: what docs/supabase.md and docs/alerts.md refer to exists (docs.py).
set -euo pipefail
source deploy/validate/lib.sh

check "Docs: paths and docs/operations.md anchors referenced by docs/supabase.md and docs/alerts.md exist" py docs
not_validated "the SQL and RLS examples in docs/supabase.md (not run against Supabase)"
