// berth web UI: the little script the server-rendered pages use. Everything works without it (forms, links);
// with it: the theme toggle, filters that update as you type, "/" to focus the filter, copy buttons.
(() => {
  const root = document.documentElement;
  const saved = localStorage.getItem('berth-theme');
  if (saved === 'light' || saved === 'dark') root.dataset.theme = saved;

  function dark() {
    if (root.dataset.theme) return root.dataset.theme === 'dark';
    return window.matchMedia('(prefers-color-scheme: dark)').matches;
  }

  // A filter form refreshes its results in place: same URL the form would load, only #results is swapped.
  let pending;
  async function refresh(form) {
    const url = new URL(form.action || location.href, location.href);
    const params = new URLSearchParams(new FormData(form));
    for (const [k, v] of [...params]) if (v === '') params.delete(k);
    url.search = params.toString();
    const ctrl = new AbortController();
    pending?.abort();
    pending = ctrl;
    try {
      const res = await fetch(url, { signal: ctrl.signal, headers: { Accept: 'text/html' } });
      const doc = new DOMParser().parseFromString(await res.text(), 'text/html');
      const next = doc.getElementById('results');
      const cur = document.getElementById('results');
      if (next && cur) cur.replaceWith(next);
      history.replaceState(null, '', url);
    } catch (e) {
      if (e.name !== 'AbortError') form.submit();
    }
  }

  function ready() {
    const toggle = document.getElementById('theme-toggle');
    toggle?.addEventListener('click', () => {
      root.dataset.theme = dark() ? 'light' : 'dark';
      localStorage.setItem('berth-theme', root.dataset.theme);
      toggle.setAttribute('aria-pressed', String(dark()));
    });
    toggle?.setAttribute('aria-pressed', String(dark()));

    for (const form of document.querySelectorAll('form[data-live]')) {
      let timer;
      form.addEventListener('input', () => {
        clearTimeout(timer);
        const page = form.querySelector('input[name=page]');
        if (page) page.value = '';
        timer = setTimeout(() => refresh(form), 180);
      });
      form.addEventListener('change', (e) => {
        if (e.target.tagName === 'SELECT') refresh(form);
      });
    }

    document.addEventListener('keydown', (e) => {
      const filter = document.querySelector('[data-filter]');
      const typing = /^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement?.tagName ?? '');
      if (e.key === '/' && !typing && filter) {
        e.preventDefault();
        filter.focus();
        filter.select();
      } else if (e.key === 'Escape' && document.activeElement === filter && filter.value) {
        filter.value = '';
        filter.form.dispatchEvent(new Event('input'));
      }
    });

    document.addEventListener('click', async (e) => {
      const btn = e.target.closest('button[data-copy]');
      if (!btn) return;
      try {
        await navigator.clipboard.writeText(btn.dataset.copy);
        btn.textContent = 'Copied';
      } catch {
        btn.textContent = 'Select and copy';
      }
      setTimeout(() => {
        btn.textContent = 'Copy';
      }, 1500);
    });
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', ready);
  else ready();
})();
