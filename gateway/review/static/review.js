// The review page's only script: send a label form as JSON to the API (with the ranking of the candidate
// answers, when ranked), generate candidate answers, keyboard shortcuts.
(function () {
  const forms = Array.from(document.querySelectorAll("form.label-form"));
  if (!forms.length) {  // the queue page: n starts reviewing
    document.addEventListener("keydown", e => { if (e.key === "n") location.href = "/review/next"; });
    return;
  }
  async function submit(form) {
    const data = new FormData(form);
    const body = { action: data.get("action"), category: (data.get("category") || "none").trim() };
    const ideal = (data.get("ideal_answer") || "").trim();
    if (ideal) body.ideal_answer = ideal;
    if (data.has("reason")) body.reason = (data.get("reason") || "").trim();
    const ranking = ranked(form.dataset.request);
    if (ranking.length) body.ranking = ranking;
    const error = form.querySelector(".error");
    error.textContent = "";
    const reply = await fetch(form.dataset.url, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      credentials: "same-origin",
    });
    if (reply.ok) { location.href = form.dataset.next; return; }
    const problem = await reply.json().catch(() => ({}));
    error.textContent = (problem.error && problem.error.message) || ("error " + reply.status);
  }
  // the candidates' indices, ordered by the rank typed beside each (1 = best); unranked ones left out
  function ranked(requestId) {
    const box = document.querySelector(`.candidates[data-request="${CSS.escape(requestId)}"]`);
    if (!box) return [];
    return Array.from(box.querySelectorAll("input.rank"))
      .filter(input => input.value !== "")
      .sort((a, b) => Number(a.value) - Number(b.value))
      .map(input => Number(input.dataset.index));
  }
  function showCandidates(box, candidates) {
    box.replaceChildren(...candidates.map((c, i) => {
      const div = document.createElement("div");
      div.className = "msg assistant candidate";
      const label = document.createElement("label");
      const input = Object.assign(document.createElement("input"),
        { className: "rank", type: "number", min: 1, max: candidates.length });
      input.dataset.index = i;
      label.append("rank ", input);
      const meta = Object.assign(document.createElement("span"),
        { className: "muted", textContent: ` ${c.model} · ${c.finish_reason}` });
      const text = Object.assign(document.createElement("div"), { className: "text", textContent: c.text });
      div.append(label, meta, text);
      return div;
    }));
  }
  document.querySelectorAll("button.make-candidates").forEach(button => button.addEventListener("click", async () => {
    const box = button.closest(".candidates");
    const error = box.querySelector(".error");
    button.disabled = true;
    error.textContent = "generating…";
    const reply = await fetch(box.dataset.url, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: "{}", credentials: "same-origin",
    });
    const answer = await reply.json().catch(() => ({}));
    if (reply.ok) { showCandidates(box, answer.candidates); return; }
    button.disabled = false;
    error.textContent = (answer.error && answer.error.message) || ("error " + reply.status);
  }));
  forms.forEach(form => form.addEventListener("submit", e => { e.preventDefault(); submit(form); }));
  const keys = { a: "allow", r: "refuse", d: "redact", e: "escalate", s: "steer" };
  document.addEventListener("keydown", e => {
    const typing = ["TEXTAREA", "INPUT"].includes(document.activeElement.tagName) && document.activeElement.type !== "radio";
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && forms.length) { e.preventDefault(); submit(forms[0]); return; }
    if (typing || !forms.length || e.ctrlKey || e.metaKey || e.altKey) return;
    const action = keys[e.key];
    if (action) {
      const radio = forms[0].querySelector(`input[name=action][value=${action}]`);
      if (radio) radio.checked = true;
    }
  });
})();
