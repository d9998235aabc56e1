"""The search page served at `/` by `hybrid.index.service`: one self-contained HTML
document (inline CSS and script, no external assets). The script posts the form to
`/search` and builds the results with `textContent`, so passage text is never parsed as
HTML; errors show the service's one-line JSON message."""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>hybrid search</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; }
form { display: flex; gap: .5rem; flex-wrap: wrap; }
#q { flex: 1 1 20rem; font-size: 1.1rem; padding: .4rem; }
#lang { width: 7rem; } #k { width: 4rem; }
table { border-collapse: collapse; width: 100%; margin-top: 1rem; }
td, th { text-align: left; vertical-align: top; padding: .3rem .5rem; border-bottom: 1px solid #ddd; }
td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
#status { color: #555; margin-top: .5rem; } #status.error { color: #b00; }
</style>
</head>
<body>
<h1>hybrid search</h1>
<form id="form">
  <input id="q" name="q" type="search" placeholder="Ask in any language" maxlength="1000" required autofocus>
  <input id="lang" name="lang" placeholder="langs: de,fr" title="comma-separated language codes (empty: all)">
  <input id="k" name="k" type="number" min="1" max="100" value="10" title="results">
  <button id="go" type="submit">Search</button>
</form>
<div id="status"></div>
<table id="results" hidden>
  <thead><tr><th>rank</th><th>score</th><th>lang</th><th>id</th><th>text</th></tr></thead>
  <tbody></tbody>
</table>
<script>
const form = document.getElementById("form");
const status = document.getElementById("status");
const table = document.getElementById("results");
function cell(row, value, cls) {
  const td = document.createElement("td");
  td.textContent = value;
  if (cls) td.className = cls;
  row.appendChild(td);
}
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = {query: document.getElementById("q").value,
                k: parseInt(document.getElementById("k").value || "10", 10)};
  const langs = document.getElementById("lang").value.split(",").map(s => s.trim()).filter(Boolean);
  if (langs.length) body.lang = langs;
  status.className = ""; status.textContent = "searching...";
  try {
    const r = await fetch("search", {method: "POST", headers: {"content-type": "application/json"},
                                     body: JSON.stringify(body)});
    const data = await r.json();
    if (!r.ok) throw new Error(data.error || ("HTTP " + r.status));
    const tbody = table.querySelector("tbody");
    tbody.replaceChildren();
    for (const hit of data.results[0]) {
      const row = document.createElement("tr");
      row.className = "hit";
      cell(row, hit.rank, "num rank"); cell(row, hit.score.toFixed(4), "num score");
      cell(row, hit.lang || "", "lang"); cell(row, hit.id, "id"); cell(row, hit.text, "text");
      tbody.appendChild(row);
    }
    table.hidden = false;
    status.textContent = data.results[0].length + " results in " + data.took_ms + " ms";
  } catch (err) {
    table.hidden = true;
    status.className = "error"; status.textContent = "error: " + err.message;
  }
});
</script>
</body>
</html>
"""
