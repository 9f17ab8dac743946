"""Templates of depot's web UI as Python strings: the page shell, its stylesheet and the chart script.

Everything here is static; the dynamic parts are filled in by proxy.ui with `str.format`
after being HTML-escaped there. No external assets: the page works offline.
"""
from __future__ import annotations

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1d2330;
       background: #f6f7f9; }
header { background: #1d2330; color: #fff; padding: .6em 1.5em; display: flex; gap: 1.5em; align-items: baseline; }
header a { color: #fff; text-decoration: none; } header .brand { font-weight: 700; font-size: 1.2em; }
main { padding: 1em 1.5em; max-width: 72em; }
h1 { font-size: 1.4em; margin: .4em 0; } h2 { font-size: 1.1em; margin: 1.2em 0 .4em; }
table { border-collapse: collapse; background: #fff; width: 100%; }
th, td { text-align: left; padding: .35em .7em; border-bottom: 1px solid #e3e6eb; }
th { background: #eef0f4; font-weight: 600; } td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #fff; border: 1px solid #e3e6eb; padding: .8em; overflow-x: auto; }
.muted { color: #6b7385; }
.tag { display: inline-block; padding: 0 .45em; border-radius: 3px; background: #e3e8f4; font-size: .9em; }
.chart { background: #fff; border: 1px solid #e3e6eb; padding: .5em; display: inline-block; }
.legend span { margin-right: 1.2em; } .hit { color: #2f8f46; } .miss { color: #c0392b; } .neg { color: #8a6d0b; }
nav.crumbs { margin: .3em 0; font-family: ui-monospace, monospace; }
.figures { display: flex; gap: 2em; margin: .4em 0; } .figure b { font-size: 1.2em; }
.sparks { display: flex; flex-wrap: wrap; gap: .8em; }
figure.spark { margin: 0; background: #fff; border: 1px solid #e3e6eb; padding: .4em .6em; }
figure.spark figcaption { font-size: .9em; color: #6b7385; } figure.spark figcaption b { color: #1d2330; }
figure.spark.mini { border: 0; padding: 0; background: none; } figure.spark.mini figcaption { display: none; }
svg.sparkline .line { fill: none; stroke: #3b6fd4; stroke-width: 1.5; } svg.sparkline .area { fill: #dfe8fa; }
figure.hits svg .line, figure.bytes_saved svg .line { stroke: #2f8f46; }
figure.hits svg .area, figure.bytes_saved svg .area { fill: #dcf0e1; }
figure.misses svg .line, figure.errors svg .line { stroke: #c0392b; }
figure.misses svg .area, figure.errors svg .area { fill: #f6dedb; }
figure.negative svg .line { stroke: #8a6d0b; } figure.negative svg .area { fill: #f5ecd2; }
form.filter { margin: .5em 0; } .enforce { color: #c0392b; font-weight: 600; } .report { color: #8a6d0b; }
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{title} · depot</title>
<style>{style}</style>
</head>
<body>
<header><a class="brand" href="{root}">depot</a><a href="{root}">repositories</a>
<a href="{root}policy">policy decisions</a><a href="{metrics}">metrics</a><a href="{root}login">sign in</a></header>
<main>
{body}
</main>
<script>{script}</script>
</body>
</html>
"""

CHART = """<h2>Live hits and misses</h2>
<div class="chart"><canvas id="hitchart" width="640" height="170" data-api="{api}" data-repo="{repo}"
 data-polls="0"></canvas>
<div class="legend"><span class="hit">&#9632; hits/s <b id="hitrate">–</b></span>
<span class="miss">&#9632; misses/s <b id="missrate">–</b></span>
<span class="neg">&#9632; negative-cache answers/s <b id="negrate">–</b></span>
<span class="muted">polled every {interval} s; summed over all workers</span></div></div>
"""

# Polls the stats endpoint, turns counters into per-second rates and draws two lines.
CHART_SCRIPT = r"""
(function () {
  "use strict";
  var canvas = document.getElementById("hitchart");
  if (!canvas) { return; }
  var HIT = ["hit", "stale", "revalidated", "hosted"], MISS = ["miss", "error"], NEG = ["negative"];
  var api = canvas.getAttribute("data-api"), repo = canvas.getAttribute("data-repo");
  var points = [], last = null, MAX = 60, INTERVAL = %(interval)d * 1000;
  function total(results, names) {
    var n = 0;
    names.forEach(function (name) { n += results[name] || 0; });
    return n;
  }
  function counts(stats) {
    var hit = 0, miss = 0, neg = 0;
    Object.keys(stats.repositories).forEach(function (name) {
      if (repo && name !== repo) { return; }
      var results = stats.repositories[name].results;
      hit += total(results, HIT); miss += total(results, MISS); neg += total(results, NEG);
    });
    return {time: stats.time, hit: hit, miss: miss, neg: neg};
  }
  function line(ctx, key, color, top) {
    ctx.strokeStyle = color; ctx.lineWidth = 2; ctx.beginPath();
    points.forEach(function (p, i) {
      var x = canvas.width - 10 - (points.length - 1 - i) * (canvas.width - 50) / (MAX - 1);  // newest at the right
      var y = canvas.height - 20 - (p[key] / top) * (canvas.height - 30);
      if (i === 0) { ctx.moveTo(x, y); } else { ctx.lineTo(x, y); }
    });
    ctx.stroke();
  }
  function draw() {
    var ctx = canvas.getContext("2d"), top = 1;
    points.forEach(function (p) { top = Math.max(top, p.hit, p.miss, p.neg); });
    ctx.fillStyle = "#ffffff"; ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.strokeStyle = "#d5d9e0"; ctx.lineWidth = 1; ctx.beginPath();
    ctx.moveTo(40, 10); ctx.lineTo(40, canvas.height - 20); ctx.lineTo(canvas.width - 10, canvas.height - 20);
    ctx.stroke();
    ctx.fillStyle = "#6b7385"; ctx.font = "11px sans-serif";
    ctx.fillText(top.toFixed(1), 2, 14); ctx.fillText("0", 28, canvas.height - 20);
    ctx.fillText("last " + MAX * INTERVAL / 1000 + " s", canvas.width - 90, canvas.height - 5);
    line(ctx, "hit", "#2f8f46", top); line(ctx, "miss", "#c0392b", top); line(ctx, "neg", "#8a6d0b", top);
  }
  function poll() {
    fetch(api, {cache: "no-store"}).then(function (r) { return r.json(); }).then(function (stats) {
      var now = counts(stats);
      if (last !== null && now.time > last.time) {
        var dt = now.time - last.time;
        points.push({hit: Math.max(0, now.hit - last.hit) / dt, miss: Math.max(0, now.miss - last.miss) / dt,
                     neg: Math.max(0, now.neg - last.neg) / dt});
        if (points.length > MAX) { points.shift(); }
        document.getElementById("hitrate").textContent = points[points.length - 1].hit.toFixed(2);
        document.getElementById("missrate").textContent = points[points.length - 1].miss.toFixed(2);
        document.getElementById("negrate").textContent = points[points.length - 1].neg.toFixed(2);
      }
      last = now;
      canvas.setAttribute("data-polls", String(Number(canvas.getAttribute("data-polls")) + 1));
      draw();
    }).catch(function (err) {
      canvas.setAttribute("data-error", String(err));
      console.error("depot: polling " + api + " failed: " + err);
    });
  }
  draw(); poll(); setInterval(poll, INTERVAL);
}());
"""
