// The review page's only script: send a label form as JSON to the API, keyboard shortcuts.
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
