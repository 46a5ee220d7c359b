"""A one-page dashboard: service health and a live view of one task (no build step)."""

DASHBOARD_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>offload</title>
<style>
 body{font:15px system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#222}
 h1{font-size:1.4rem} code,pre{background:#f4f4f4;padding:.1rem .3rem;border-radius:3px}
 pre{padding:.6rem;overflow:auto} .ok{color:#176b2c} .bad{color:#a11}
 input{font:inherit;padding:.3rem;width:100%;box-sizing:border-box;margin:.2rem 0 .6rem}
 button{font:inherit;padding:.3rem 1rem} progress{width:100%}
</style></head><body>
<h1>offload</h1>
<p>Service health: <span id="health">checking…</span>.
 API docs: <a href="/docs">/docs</a>, metrics: <a href="/metrics">/metrics</a>.</p>
<h2>Watch a task</h2>
<label>API key <input id="key" placeholder="dev-key" autocomplete="off"></label>
<label>Task id <input id="task"></label>
<button id="watch">Watch</button>
<p id="stage"></p><progress id="bar" max="100" value="0"></progress>
<pre id="out">(no task)</pre>
<script>
const $ = (id) => document.getElementById(id);
fetch('/health').then(r => r.json()).then(h => {
  const bad = Object.entries(h.checks).filter(([, c]) => !c.ok).map(([n]) => n);
  $('health').textContent = bad.length ? 'unavailable: ' + bad.join(', ') : 'ok';
  $('health').className = bad.length ? 'bad' : 'ok';
});
$('watch').onclick = async () => {
  const key = $('key').value || 'dev-key', id = $('task').value.trim();
  if (!id) return;
  const resp = await fetch('/tasks/' + encodeURIComponent(id) + '/events',
                           {headers: {Authorization: 'Bearer ' + key}});
  if (!resp.ok) { $('out').textContent = resp.status + ' ' + await resp.text(); return; }
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf('\\n\\n')) >= 0) {
      const block = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
      const data = block.split('\\n').find(l => l.startsWith('data: '));
      if (!data) continue;
      const status = JSON.parse(data.slice(6));
      if (!status.state) continue;
      $('out').textContent = JSON.stringify(status, null, 2);
      const p = status.progress || {};
      $('bar').value = status.state === 'SUCCESS' ? 100 : (p.percent || 0);
      $('stage').textContent = status.state + (p.stage ? ' · ' + p.stage : '');
    }
  }
};
</script></body></html>
"""
