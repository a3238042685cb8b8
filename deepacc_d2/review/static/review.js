// The review page: a case's cells, one cell's metaphase with its chromosomes and its
// karyogram; every change goes to the server at once (POST /api/cells/<id>/edit) with the
// cell's version, and the page shows what the server made of it.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
const page = { classes: [], cellId: null, record: null, selected: null, adding: false, busy: false };

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, options) {
  const response = await fetch(path, options);
  let body;
  try {
    body = await response.json();
  } catch (e) {
    throw new ApiError(response.status, `${path}: ${response.status} ${response.statusText}`);
  }
  if (!response.ok) throw new ApiError(response.status, body.error);
  return body;
}

function say(text, ok = false) {
  $("message").textContent = text;
  $("message").className = ok ? "ok" : "";
}

function color(name) {
  const c = page.classes.find((k) => k.name === name);
  return c ? `rgb(${c.color.join(",")})` : "#000";
}

function classOptions(select) {
  select.replaceChildren(
    ...page.classes.map((k) => new Option(`${k.name} (${k.group})`, k.name)),
  );
}

async function loadCase() {
  const view = await api("/api/case");
  const s = view.summary;
  $("case-summary").textContent =
    `Case: ${s.karyotype || "(no cell line qualifies)"} · modal count ${s.modal_count ?? "-"}` +
    ` · ${s.cells_read} cells · to review ${Object.keys(s.review).length}` +
    ` · reviewed ${s.reviewed.length}`;
  $("cells").replaceChildren(
    ...view.cells.map((c) => {
      const b = document.createElement("button");
      b.type = "button";
      b.dataset.cell = c.id;
      b.className = c.id === page.cellId ? "current" : "";
      const mark = c.reviewed
        ? '<span class="done">✓ reviewed</span>'
        : c.needs_review
          ? '<span class="flag">⚑ review</span>'
          : "";
      b.innerHTML = `<b></b><br><span class="call"></span> ${mark}`;
      b.querySelector("b").textContent = c.id;
      b.querySelector(".call").textContent = c.karyotype || `no call (${c.total})`;
      b.title = c.flags.join("\n");
      b.onclick = () => openCell(c.id);
      return b;
    }),
  );
  return view;
}

async function openCell(id) {
  page.cellId = id;
  page.selected = null;
  const record = await api(`/api/cells/${encodeURIComponent(id)}`);
  if (page.cellId !== id) return; // another cell was opened meanwhile
  page.record = record;
  history.replaceState(null, "", `#${encodeURIComponent(id)}`);
  $("cell").hidden = false;
  $("metaphase").replaceChildren(); // a new image
  say("");
  render();
  for (const b of $("cells").children) b.classList.toggle("current", b.dataset.cell === id);
}

function render() {
  const r = page.record;
  const id = encodeURIComponent(page.cellId);
  $("cell-name").textContent = page.cellId;
  $("call").textContent = r.karyotype || "no karyotype call";
  $("total").textContent = `${r.total} chromosomes · version ${r.version}`;
  $("mark-reviewed").textContent = r.reviewed ? "Reviewed ✓ (undo)" : "Mark reviewed";
  $("flags").replaceChildren(
    ...r.flags.map((f) => {
      const li = document.createElement("li");
      li.textContent = f.message;
      return li;
    }),
  );
  if (!r.flags.length) $("flags").innerHTML = "<li>none</li>";
  $("karyogram").src = `/api/cells/${id}/karyogram.png?v=${r.version}`;

  const svg = $("metaphase");
  if (!svg.querySelector("image")) {
    svg.setAttribute("viewBox", `0 0 ${r.image.width} ${r.image.height}`);
    const img = document.createElementNS(SVG, "image");
    img.setAttribute("href", `/api/cells/${id}/image.png`);
    img.setAttribute("width", r.image.width);
    img.setAttribute("height", r.image.height);
    svg.appendChild(img);
  }
  for (const el of svg.querySelectorAll("rect, text")) el.remove();
  r.detections.forEach((d, i) => {
    const [x1, y1, x2, y2] = d.bbox_xyxy;
    const rect = document.createElementNS(SVG, "rect");
    rect.setAttribute("x", x1);
    rect.setAttribute("y", y1);
    rect.setAttribute("width", x2 - x1);
    rect.setAttribute("height", y2 - y1);
    rect.setAttribute("stroke", color(d.class));
    rect.classList.add("chromosome");
    if (d.source === "person") rect.classList.add("person");
    if (i === page.selected) rect.classList.add("selected");
    rect.dataset.index = i;
    rect.dataset.class = d.class;
    rect.addEventListener("click", (e) => {
      if (page.adding) return;
      e.stopPropagation();
      select(i);
    });
    const label = document.createElementNS(SVG, "text");
    label.setAttribute("x", x1 + 2);
    label.setAttribute("y", Math.max(y1 - 3, 12));
    label.setAttribute("fill", color(d.class));
    label.textContent = d.source === "person" ? d.class : `${d.class} ${Math.round(d.score * 100)}%`;
    svg.append(rect, label);
  });
  select(page.selected !== null && page.selected < r.detections.length ? page.selected : null);
}

function select(i) {
  page.selected = i;
  for (const rect of $("metaphase").querySelectorAll("rect.chromosome")) {
    rect.classList.toggle("selected", Number(rect.dataset.index) === i);
  }
  const d = i === null ? null : page.record.detections[i];
  $("class-select").disabled = $("delete").disabled = d === null;
  if (d === null) {
    $("selected-info").textContent = "Click a chromosome to select it.";
    return;
  }
  $("class-select").value = d.class;
  const top3 = d.top3.map(([k, p]) => `${k} ${Math.round(p * 100)}%`).join(", ");
  $("selected-info").textContent =
    `chromosome #${i}: ${d.class}` + (d.source === "person" ? " (named by a person)" : ` (model: ${top3})`);
}

async function change(body) {
  if (page.busy) { // one change at a time: the next one needs this one's version
    say("the last change is still being saved: try again");
    render();
    return;
  }
  const id = page.cellId;
  body.version = page.record.version;
  page.busy = true;
  try {
    const record = await api(`/api/cells/${encodeURIComponent(id)}/edit`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (page.cellId === id) { // still on the cell it changed
      page.record = record;
      if (body.action === "delete") page.selected = null;
      say(`saved (version ${record.version})`, true);
      render();
    }
    await loadCase();
  } catch (e) {
    say(e.status === 409 ? `${e.message} — press Reload.` : `not saved: ${e.message}`);
  } finally {
    page.busy = false;
  }
}

function imagePoint(svg, event) {
  const p = new DOMPoint(event.clientX, event.clientY).matrixTransform(svg.getScreenCTM().inverse());
  const r = page.record.image;
  return [Math.min(Math.max(p.x, 0), r.width), Math.min(Math.max(p.y, 0), r.height)];
}

function setAdding(on) {
  page.adding = on;
  $("metaphase").classList.toggle("adding", on);
  $("add-hint").hidden = !on;
  $("add-mode").textContent = on ? "Stop adding" : "Add a chromosome";
}

function drawing() {
  const svg = $("metaphase");
  let start = null;
  let box = null;
  svg.addEventListener("pointerdown", (e) => {
    if (!page.adding) return;
    e.preventDefault();
    start = imagePoint(svg, e);
    box = document.createElementNS(SVG, "rect");
    box.classList.add("drawing");
    svg.appendChild(box);
  });
  svg.addEventListener("pointermove", (e) => {
    if (!start) return;
    const [x, y] = imagePoint(svg, e);
    box.setAttribute("x", Math.min(x, start[0]));
    box.setAttribute("y", Math.min(y, start[1]));
    box.setAttribute("width", Math.abs(x - start[0]));
    box.setAttribute("height", Math.abs(y - start[1]));
  });
  svg.addEventListener("pointerup", async (e) => {
    if (!start) return;
    const [x, y] = imagePoint(svg, e);
    const bbox = [Math.min(x, start[0]), Math.min(y, start[1]), Math.max(x, start[0]), Math.max(y, start[1])];
    start = null;
    box.remove();
    if (bbox[2] - bbox[0] < 2 || bbox[3] - bbox[1] < 2) return; // a click, not a box
    setAdding(false);
    await change({ action: "add", bbox_xyxy: bbox.map((v) => Math.round(v * 100) / 100), class: $("add-class").value });
  });
  svg.addEventListener("click", () => {
    if (!page.adding) select(null);
  });
}

async function main() {
  page.classes = await api("/api/classes");
  classOptions($("class-select"));
  classOptions($("add-class"));
  $("class-select").onchange = () => change({ action: "class", index: page.selected, class: $("class-select").value });
  $("delete").onclick = () => change({ action: "delete", index: page.selected });
  $("mark-reviewed").onclick = () => change({ action: "reviewed", reviewed: !page.record.reviewed });
  $("add-mode").onclick = () => setAdding(!page.adding);
  $("reload").onclick = () => openCell(page.cellId).then(loadCase);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape") setAdding(false);
    if (e.key === "Delete" && !e.repeat && page.selected !== null) $("delete").click();
  });
  drawing();
  const view = await loadCase();
  const wanted = decodeURIComponent(location.hash.slice(1));
  const first = view.cells.find((c) => c.id === wanted) || view.cells[0];
  if (first) await openCell(first.id);
  else say("This case has no cells.");
}

main().catch((e) => say(e.message));
