"""The clip player: a <video> of the clip's proxy (streamed from disk by media.py), driven from the keyboard.

Keys (shown under the player): Space play/pause, ``,`` ``.`` one frame back/forward, ``[`` ``]`` slower/faster
(0.25×–4×, kept from clip to clip), 1–9 pick the n-th choice of a choice field, Ctrl+Enter presses the page's
primary button (Submit) after committing the field being typed in. Keys typed into a text or number field stay
there. Ctrl+Enter is handled here rather than by Streamlit's ``shortcut=`` so that the buttons' accessible names
stay exactly "Submit", "Skip", "Unclear". The script is installed once per browser tab; the clip's frame rate and
frame count travel in data attributes of the key bar, so stepping lands on frames of the clip on screen.

The next clip's proxy is fetched into the browser cache while the current one plays (media.py makes it
cacheable), so that after Submit the new clip is playable without waiting for the network.
"""

from __future__ import annotations

import html
import json

import streamlit as st

from curation.team.progress import ClipView

RATES = (0.25, 0.5, 0.75, 1, 1.25, 1.5, 2, 3, 4)

# Beware: st.html sanitises with DOMPurify, which silently drops a whole <script> whose text contains "<" followed
# by a letter, "/" or "!" (even in a comment). tests/test_ui_app.py checks this script has none.

KEYS_SCRIPT = """<script>
(() => {
  const w = window;
  w.__ctFetched = w.__ctFetched || new Set();
  setTimeout(() => {  // after the clip on screen has started loading: it comes first
    for (const el of document.querySelectorAll('[data-ct-prefetch]')) {
      const url = el.dataset.ctPrefetch;
      if (w.__ctFetched.has(url)) continue;
      w.__ctFetched.add(url);
      fetch(url, {credentials: 'same-origin'}).then((r) => r.ok ? r.arrayBuffer() : null)
        .catch(() => w.__ctFetched.delete(url));
    }
  }, 300);
  if (w.__cliptuneKeys) { w.__cliptuneShow && w.__cliptuneShow(); return; }
  w.__cliptuneKeys = true;
  w.__cliptuneRate = w.__cliptuneRate || 1;
  const RATES = __RATES__;
  const video = () => document.getElementById('ct-video');
  const bar = () => document.getElementById('ct-player');
  const typing = (el) => !!el && (el.isContentEditable || el.tagName === 'TEXTAREA' || el.tagName === 'SELECT'
    || (el.tagName === 'INPUT' && !['radio', 'checkbox', 'button', 'submit'].includes(el.type)));
  const fps = () => parseFloat(bar()?.dataset.fps) || 25;
  const frame = (v) => Math.floor(v.currentTime * fps() + 1e-6);
  const show = () => {
    const b = bar(), v = video();
    if (!b) return;
    const n = parseInt(b.dataset.frames) || 0;
    b.querySelector('[data-ct=speed]').textContent = w.__cliptuneRate + '×';
    if (v) b.querySelector('[data-ct=frame]').textContent = Math.min(frame(v) + 1, n || Infinity) + ' / ' + n;
    if (v) b.querySelector('[data-ct=state]').textContent = v.paused ? 'paused' : 'playing';
  };
  w.__cliptuneShow = show;
  const step = (v, delta) => {
    v.pause();
    const n = parseInt(bar()?.dataset.frames) || Math.round(v.duration * fps());
    const target = Math.max(0, Math.min(n - 1, frame(v) + delta));
    v.currentTime = (target + 0.5) / fps();  // the middle of the frame: never rounds onto a neighbour
  };
  const pick = (target, digit) => {
    const groups = [...document.querySelectorAll('[data-testid="stMain"] [role="radiogroup"]')];
    const group = target.closest?.('[role="radiogroup"]')
      || groups.find((g) => !g.querySelector('input:checked')) || groups[0];
    const input = group?.querySelectorAll('input[type="radio"]')[digit - 1];
    if (!input) return false;
    input.click();
    input.focus();  // so that Tab goes on to the next field
    return true;
  };
  window.addEventListener('keydown', (e) => {
    if ((e.ctrlKey || e.metaKey) && e.key === 'Enter') {
      // Commit the field being typed in (Streamlit commits on blur), then press the page's primary button.
      const button = document.querySelector('[data-testid="stMain"] [data-testid="stBaseButton-primary"]');
      if (!button || button.disabled) return;
      e.preventDefault(); e.stopPropagation();
      if (typing(document.activeElement)) document.activeElement.blur();
      button.click();
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey || typing(e.target)) return;
    const v = video();
    let done = true;
    if (e.key === ' ' && v && e.target.tagName !== 'BUTTON') { v.paused ? v.play() : v.pause(); }
    else if ((e.key === ',' || e.key === '.') && v) { step(v, e.key === '.' ? 1 : -1); }
    else if (e.key === '[' || e.key === ']') {
      const i = RATES.indexOf(w.__cliptuneRate);
      w.__cliptuneRate = RATES[Math.max(0, Math.min(RATES.length - 1, i + (e.key === ']' ? 1 : -1)))];
      if (v) v.playbackRate = w.__cliptuneRate;
    }
    else if (/^[1-9]$/.test(e.key)) { done = pick(e.target, +e.key); }
    else { done = false; }
    if (done) { e.preventDefault(); e.stopPropagation(); show(); }
  }, true);
  // Media events do not bubble, but capture listeners on the document see them for every video element.
  const keepRate = (e) => { if (e.target.tagName === 'VIDEO') e.target.playbackRate = w.__cliptuneRate; };
  document.addEventListener('loadedmetadata', keepRate, true);
  document.addEventListener('play', keepRate, true);
  for (const type of ['timeupdate', 'seeked', 'play', 'pause', 'ratechange', 'loadeddata'])
    document.addEventListener(type, show, true);
})();
</script>""".replace("__RATES__", json.dumps(list(RATES)))


def key_bar(clip: ClipView, *, extra: str = "") -> str:
    """The on-screen key help, with live speed / frame / play state, carrying the clip's frame rate."""
    keys = [("Space", "play / pause"), (", .", "frame − / +"), ("[ ]", "speed"), ("1–9", "pick choice"),
            ("Tab", "next field"), ("Ctrl+Enter", "submit")]
    items = " · ".join(f"<kbd>{html.escape(k)}</kbd> {html.escape(what)}" for k, what in keys)
    return (
        f'<div id="ct-player" data-fps="{clip.fps:g}" data-frames="{clip.n_frames}" data-clip="{clip.id}" '
        f'style="font-size:0.85rem;line-height:1.8">'
        f'<span data-ct="state">paused</span> · frame <span data-ct="frame">1 / {clip.n_frames}</span> · '
        f'speed <b data-ct="speed">1×</b><br>{items}{extra}</div>'
    )


def clip_url(clip_id: int) -> str:
    # Relative to the page (/label, /review), so it works whatever host name the browser used.
    return f"clip/{clip_id}.mp4"


def video_html(clip: ClipView, prefetch: int | None = None) -> str:
    """A looping, muted (so it may start by itself) <video> of the clip, and the next clip to fetch ahead."""
    ahead = f'<span hidden data-ct-prefetch="{clip_url(prefetch)}"></span>' if prefetch is not None else ""
    return (
        f'<video id="ct-video" src="{clip_url(clip.id)}" data-clip="{clip.id}" autoplay muted loop playsinline '
        f'controls preload="auto" style="width:100%;max-height:65vh;border-radius:0.5rem;background:#000">'
        f"</video>{ahead}"
    )


def player(clip: ClipView, prefetch: int | None = None) -> None:
    """The clip with the key bar and the key script; ``prefetch`` names the clip likely to come next."""
    if clip.proxy is None or not clip.proxy.exists():
        st.error(f"Clip {clip.id} has no browser proxy ({clip.path}); run `cliptune ingest` again to make it.")
        return
    # One element, rendered again only when the clip changes: widget reruns leave the playing video alone.
    st.html(video_html(clip, prefetch) + key_bar(clip) + KEYS_SCRIPT, unsafe_allow_javascript=True)
