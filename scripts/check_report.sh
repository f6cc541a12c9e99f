#!/usr/bin/env bash
# Open the rendered reports as a reader would, in headless Chromium (Debian package `chromium`),
# take a screenshot of each, and fail when a page is blank, has a broken image or link, or shows
# NaN. Usage: scripts/check_report.sh [reports/index.html ...]  (default: the index and every
# archived study report). Screenshots land in reports/screenshots/ (not committed).
set -euo pipefail
cd "$(dirname "$0")/.."
CHROME=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$CHROME" ] || { echo "check_report: install chromium (apt-get install chromium)" >&2; exit 2; }
pages=("$@")
if [ ${#pages[@]} -eq 0 ]; then
  pages=(reports/index.html)
  for f in reports/*/study.html; do [ -f "$f" ] && pages+=("$f"); done
fi
out=reports/screenshots
mkdir -p "$out"
status=0
for page in "${pages[@]}"; do
  name=$(echo "$page" | sed 's#^reports/##; s#/#_#g; s#\.html$##')
  dom=$(mktemp)
  "$CHROME" --headless --no-sandbox --disable-gpu --allow-file-access-from-files --virtual-time-budget=5000 \
      --dump-dom "file://$PWD/$page" > "$dom" 2>/dev/null
  "$CHROME" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1280,4000 \
      --screenshot="$out/$name.png" "file://$PWD/$page" >/dev/null 2>&1
  python3 - "$page" "$dom" "$out/$name.png" <<'PY' || status=1
import base64, html.parser, os, re, sys
from pathlib import Path
page, dom, shot = Path(sys.argv[1]), Path(sys.argv[2]).read_text(errors="replace"), Path(sys.argv[3])
problems = []
text = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", dom, flags=re.S)
text = re.sub(r"<[^>]+>", " ", text)
if len(text.split()) < 30:
    problems.append("blank page (under 30 words)")
if re.search(r"\bNaN\b", text):
    problems.append("shows NaN")
class P(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(); self.imgs = []; self.links = []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img": self.imgs.append(a.get("src", ""))
        if tag == "a" and a.get("href"): self.links.append(a["href"])
p = P(); p.feed(dom)
for src in p.imgs:
    if src.startswith("data:image/"):
        try:
            if len(base64.b64decode(src.split(",", 1)[1])) < 100: problems.append("empty embedded image")
        except Exception: problems.append("undecodable embedded image")
    elif not src.startswith(("http:", "https:")) and not (page.parent / src).is_file():
        problems.append(f"broken image {src}")
for href in p.links:
    if href.startswith(("http:", "https:", "#", "mailto:")): continue
    if not (page.parent / href.split("#")[0]).exists(): problems.append(f"broken link {href}")
if not shot.is_file() or shot.stat().st_size < 5000:
    problems.append("no screenshot")
print(f"check_report: {page}: {len(p.imgs)} images, {len(p.links)} links" + ("" if not problems else " -- " + "; ".join(problems)))
sys.exit(1 if problems else 0)
PY
  rm -f "$dom"
done
exit $status
