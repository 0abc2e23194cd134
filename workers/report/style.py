"""The report's inline stylesheet (one constant; the CSP allows inline styles only)."""

CSS = """
:root{--ink:#1d2330;--mute:#5b6475;--line:#dde1e8;--bg:#f6f7f9;--card:#fff;
--backlash:#c0392b;--supportive:#1f7a4d;--neutral:#5d6d7e;--off_topic:#8e7cc3;--failed:#9a6b00}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
color:var(--ink);background:var(--bg)}
.wrap,main{max-width:1040px;margin:0 auto;padding:0 20px}
header.top{background:#1d2330;color:#fff;padding:18px 0 16px}
header.top h1{margin:0 0 4px;font-size:30px}
.kicker{margin:0;text-transform:uppercase;letter-spacing:.08em;font-size:12px;color:#aab3c5}
.meta{margin:0 0 10px;color:#cfd6e3;font-size:13px}
.meta code{color:#fff}
.warn{color:#ffd27a}
.reveal-all{display:inline-flex;align-items:center;gap:8px;cursor:pointer;font-size:14px;
background:#2e3748;border-radius:6px;padding:6px 10px}
.reveal-all .hint{color:#aab3c5}
.reveal-all .box{width:16px;height:16px;border:2px solid #fff;border-radius:3px;
display:inline-block}
#reveal-all:checked~header .reveal-all .box{background:#fff;box-shadow:inset 0 0 0 2px #2e3748}
#reveal-all:focus-visible~header .reveal-all{outline:3px solid #7fb2ff}
section{background:var(--card);border:1px solid var(--line);border-radius:10px;
padding:16px 20px;margin:18px 0}
h2{margin:0 0 8px;font-size:20px}
h2 small{font-weight:400;color:var(--mute);font-size:14px}
.lede{font-size:17px;margin:4px 0 12px}
.cards{display:grid;grid-template-columns:repeat(5,1fr);gap:10px;margin:0}
.card{border:1px solid var(--line);border-left:6px solid var(--c);border-radius:8px;
padding:8px 12px}
.card dt{font-weight:600;color:var(--c)}
.card dd{margin:0}
.card .count{font-size:26px;font-weight:700}
.card .share{color:var(--mute);margin-left:4px}
.v-backlash{--c:var(--backlash)}.v-supportive{--c:var(--supportive)}
.v-neutral{--c:var(--neutral)}.v-off_topic{--c:var(--off_topic)}.v-failed{--c:var(--failed)}
.stack{display:flex;height:10px;border-radius:5px;overflow:hidden;margin-top:12px;background:#eee}
.stack .seg{background:var(--c)}
.legend{color:var(--mute);font-size:13px;margin:0 0 6px}
.key{display:inline-block;width:18px;vertical-align:middle}
.key.line{height:0;border-top:3px solid var(--backlash)}
.key.bar{height:10px;background:#c9d0dc}
svg.chart{width:100%;height:auto;display:block}
.chart .grid{stroke:#e6e9ef}
.chart .axis{font-size:11px;fill:var(--mute)}
.chart .vol{fill:#c9d0dc}
.chart .bucket:hover .vol{fill:#9fabbf}
.chart .share{fill:none;stroke:var(--backlash);stroke-width:2.5}
.chart .pt{fill:#fff;stroke:var(--backlash);stroke-width:2}
.chart .pt.few{stroke:#9aa3b2}
details{margin-top:6px}summary{cursor:pointer;color:var(--mute)}
table{border-collapse:collapse;width:100%;font-size:14px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid var(--line);vertical-align:top}
thead th{font-size:12px;text-transform:uppercase;letter-spacing:.04em;color:var(--mute)}
td.num,.num{font-variant-numeric:tabular-nums}
.scenes th[scope=row]{text-transform:capitalize;white-space:nowrap}
.scenes .grp{color:var(--mute)}
.barcell{width:50%}
.hbar{display:inline-block;height:12px;background:var(--backlash);border-radius:2px;
margin-right:8px;vertical-align:middle;min-width:1px}
.hbar.g-friendly{background:var(--supportive)}.hbar.g-police,.hbar.g-off_topic{background:#8896ab}
ol.posts,ul.clusters{list-style:none;margin:0;padding:0;display:grid;
grid-template-columns:repeat(2,1fr);gap:12px}
.post,.cluster{display:flex;gap:12px;border:1px solid var(--line);border-radius:8px;padding:10px}
.body{min-width:0;flex:1}
.body p{margin:0 0 4px}
.head{font-size:13px;color:var(--mute)}
.rank{font-weight:700;color:var(--ink)}
.badge{display:inline-block;font-weight:600;font-size:12px;color:#fff;background:var(--c);
border-radius:10px;padding:0 8px}
.caption{margin:4px 0;font-size:15px;overflow-wrap:anywhere}
.by{font-size:12px;color:var(--mute)}
.review{font-size:12px;color:var(--failed);margin:4px 0 0}
.reasons{margin:4px 0 0;padding-left:18px;font-size:12px;color:var(--mute)}
.thumb{position:relative;flex:0 0 120px;width:120px;height:120px;border-radius:6px;
overflow:hidden;background:#e9ecf1;display:block}
.thumb img{width:100%;height:100%;object-fit:cover;display:block}
.thumb.missing{display:flex;align-items:center;justify-content:center;text-align:center;
color:var(--mute);font-size:12px;border:1px dashed #b8c0cc}
label.thumb{cursor:pointer}
.sensitive img{filter:blur(14px) grayscale(.4);transform:scale(1.1)}
.sensitive .veil{position:absolute;inset:0;display:flex;align-items:center;justify-content:center;
text-align:center;color:#fff;font-size:12px;font-weight:600;background:rgba(20,24,32,.35)}
.sensitive .reveal:checked~img,#reveal-all:checked~main .sensitive img{filter:none;transform:none}
.sensitive .reveal:checked~.veil,#reveal-all:checked~main .sensitive .veil{display:none}
.sensitive .reveal:focus-visible~img{outline:3px solid #3b82f6}
.visually-hidden{position:absolute!important;width:1px;height:1px;overflow:hidden;
clip:rect(0 0 0 0);white-space:nowrap;margin:-1px;padding:0;border:0}
footer{color:var(--mute);font-size:12px;padding-bottom:30px}
@media (max-width:760px){.cards{grid-template-columns:repeat(2,1fr)}
ol.posts,ul.clusters{grid-template-columns:1fr}}
"""
