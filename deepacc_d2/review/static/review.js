// The review page: a case's cells, one cell's metaphase with its chromosomes and its
// karyogram; every change goes to the server at once (POST /api/cells/<id>/edit) with the
// cell's version, and the page shows what the server made of it.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
const page = {
  classes: [],
  cellId: null,
  record: null,
  selected: null,
  adding: false,
  busy: false,
  typed: "", // a class name being typed on the class list (classKeys)
  lastPick: null, // where the last click on the boxes was ({x, y} on the screen)
};

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
    `Case: ${s.karyotype || "(no cell line qualifies)"} (${s.rule}: ${s.explanation})` +
    ` · modal count ${s.modal_count ?? "-"}` +
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
  page.lastPick = null;
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
  // the largest boxes first: a small box drawn over a large one stays on top, within reach
  for (const i of drawingOrder(r.detections)) {
    const d = r.detections[i];
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
      pick(e, i);
    });
    const label = document.createElementNS(SVG, "text");
    label.setAttribute("x", x1 + 2);
    label.setAttribute("y", Math.max(y1 - 3, 12));
    label.setAttribute("fill", color(d.class));
    label.textContent = d.source === "person" ? d.class : `${d.class} ${Math.round(d.score * 100)}%`;
    svg.append(rect, label);
  }
  select(page.selected !== null && page.selected < r.detections.length ? page.selected : null);
}

const area = ([x1, y1, x2, y2]) => (x2 - x1) * (y2 - y1);

function drawingOrder(detections) {
  // indices, the largest box first (ties in index order): the last drawn is on top
  const size = detections.map((d) => area(d.bbox_xyxy));
  return detections.map((d, i) => i).sort((a, b) => size[b] - size[a] || a - b);
}

function pick(event, hit) {
  // a click on the boxes selects the one on top there; a second click on the same spot steps
  // to the next box under it, so that every one of overlapping boxes can be reached
  const [x, y] = imagePoint($("metaphase"), event);
  const detections = page.record.detections;
  const under = drawingOrder(detections)
    .reverse()
    .filter((i) => {
      const [x1, y1, x2, y2] = detections[i].bbox_xyxy;
      return x1 <= x && x <= x2 && y1 <= y && y <= y2;
    });
  if (!under.includes(hit)) under.unshift(hit); // on the box's stroke, just outside it
  const last = page.lastPick;
  const again = last && Math.hypot(event.clientX - last.x, event.clientY - last.y) <= 3;
  const at = again ? under.indexOf(page.selected) : -1;
  page.lastPick = { x: event.clientX, y: event.clientY };
  select(under[(at + 1) % under.length]);
}

function select(i) {
  page.selected = i;
  page.typed = "";
  for (const rect of $("metaphase").querySelectorAll("rect.chromosome")) {
    rect.classList.toggle("selected", Number(rect.dataset.index) === i);
  }
  const d = i === null ? null : page.record.detections[i];
  $("class-select").disabled = $("delete").disabled = d === null;
  $("to-model").disabled = d === null || d.source !== "person" || !d.model;
  if (d === null) {
    $("selected-info").textContent = "Click a chromosome to select it.";
    return;
  }
  $("class-select").value = d.class;
  const top3 = d.top3.map(([k, p]) => `${k} ${Math.round(p * 100)}%`).join(", ");
  const said = d.model ? `; model: ${d.model.class} ${Math.round(d.model.score * 100)}%` : "";
  $("selected-info").textContent =
    `chromosome #${i}: ${d.class}` + (d.source === "person" ? ` (named by a person${said})` : ` (model: ${top3})`);
}

function classKeys(e) {
  // Typing on the class list: its own type-ahead would pick (and save) a class at the first
  // key, "1" of "16". The keys gather into a name instead; Enter saves it, and so does a name
  // no other class starts with (X, 16, 7). The arrows move through the list; Enter saves.
  if (e.ctrlKey || e.metaKey || e.altKey || page.selected === null) return;
  const select = $("class-select");
  const names = page.classes.map((k) => k.name);
  const starting = (text) => names.filter((n) => n.startsWith(text));
  const current = page.record.detections[page.selected].class;
  let typed = page.typed;
  if (e.key === "Enter") {
    e.preventDefault();
    if (typed && !names.includes(typed)) return say(`no class ${typed}: type 1–22, X or Y`);
    saveClass(typed || select.value);
    return;
  }
  if (e.key === "Escape") {
    page.typed = "";
    select.value = current;
    return;
  }
  const step = { ArrowDown: 1, ArrowUp: -1, PageDown: 5, PageUp: -5, Home: -99, End: 99 }[e.key];
  if (step !== undefined) {
    e.preventDefault();
    page.typed = "";
    select.selectedIndex = Math.min(Math.max(select.selectedIndex + step, 0), names.length - 1);
    say(`class ${select.value}: Enter saves it`, true);
    return;
  }
  if (e.key === "Backspace") {
    e.preventDefault();
    typed = typed.slice(0, -1);
  } else if (e.key.length === 1 && e.key !== " ") { // a space opens the list
    e.preventDefault();
    typed = (typed + e.key).toUpperCase();
    if (!starting(typed).length) typed = e.key.toUpperCase(); // a new name
    if (!starting(typed).length) {
      page.typed = "";
      return say(`no class starts with ${e.key}: type 1–22, X or Y`);
    }
  } else {
    return;
  }
  page.typed = typed;
  select.value = names.includes(typed) ? typed : current;
  if (typed && starting(typed).length === 1 && names.includes(typed)) saveClass(typed);
  else if (typed) say(`class ${typed}…: type on${names.includes(typed) ? `, or Enter saves ${typed}` : ""}`, true);
  else say("");
}

function saveClass(name) {
  page.typed = "";
  const d = page.record.detections[page.selected];
  if (name === d.class) return say(`chromosome #${page.selected} is a ${name} already`, true);
  change({ action: "class", index: page.selected, class: name });
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
    if (page.cellId === id) render(); // the page shows the cell as it is, not the change
    say(e.status === 409 ? `${e.message} — press Reload.` : `not saved: ${e.message}`);
  } finally {
    page.busy = false;
  }
}

function imagePoint(svg, event, clamp = true) {
  // the event's point in image pixels, clamped to the image
  const p = new DOMPoint(event.clientX, event.clientY).matrixTransform(svg.getScreenCTM().inverse());
  const r = page.record.image;
  if (!clamp) return [p.x, p.y];
  return [Math.min(Math.max(p.x, 0), r.width), Math.min(Math.max(p.y, 0), r.height)];
}

function insideImage(svg, event) {
  const [x, y] = imagePoint(svg, event, false);
  const r = page.record.image;
  return x >= 0 && y >= 0 && x <= r.width && y <= r.height;
}

const drag = { start: null, box: null }; // the box being drawn in add mode

function endDrag() {
  if (drag.box) drag.box.remove();
  drag.start = drag.box = null;
}

function setAdding(on) {
  page.adding = on;
  endDrag();
  $("metaphase").classList.toggle("adding", on);
  $("add-hint").hidden = !on;
  $("add-mode").textContent = on ? "Stop adding" : "Add a chromosome";
}

function drawing() {
  const svg = $("metaphase");
  svg.addEventListener("pointerdown", (e) => {
    if (!page.adding || e.button !== 0) return;
    e.preventDefault();
    endDrag();
    drag.start = imagePoint(svg, e);
    drag.box = document.createElementNS(SVG, "rect");
    drag.box.classList.add("drawing");
    svg.appendChild(drag.box);
  });
  // on the whole page: the pointer may leave the image while the button is down
  document.addEventListener("pointermove", (e) => {
    if (!drag.start) return;
    const [x, y] = imagePoint(svg, e);
    const start = drag.start;
    drag.box.setAttribute("x", Math.min(x, start[0]));
    drag.box.setAttribute("y", Math.min(y, start[1]));
    drag.box.setAttribute("width", Math.abs(x - start[0]));
    drag.box.setAttribute("height", Math.abs(y - start[1]));
  });
  document.addEventListener("pointerup", async (e) => {
    if (!drag.start) return;
    const start = drag.start;
    endDrag(); // every release ends the drag, wherever it is
    if (!page.adding) return;
    if (!insideImage(svg, e)) {
      say("released outside the metaphase: nothing added (Esc stops adding)");
      return;
    }
    const [x, y] = imagePoint(svg, e);
    const bbox = [Math.min(x, start[0]), Math.min(y, start[1]), Math.max(x, start[0]), Math.max(y, start[1])];
    if (bbox[2] - bbox[0] < 2 || bbox[3] - bbox[1] < 2) return; // a click, not a box
    setAdding(false);
    await change({ action: "add", bbox_xyxy: bbox.map((v) => Math.round(v * 100) / 100), class: $("add-class").value });
  });
  document.addEventListener("pointercancel", endDrag);
  svg.addEventListener("click", () => {
    if (page.adding) return;
    page.lastPick = null;
    select(null);
  });
}

async function main() {
  page.classes = await api("/api/classes");
  classOptions($("class-select"));
  classOptions($("add-class"));
  // a class picked from the open list saves at once; typed ones wait for the whole name
  $("class-select").onchange = () => saveClass($("class-select").value);
  $("class-select").addEventListener("keydown", classKeys);
  $("class-select").addEventListener("blur", () => {
    if (page.typed) say("");
    page.typed = "";
  });
  $("to-model").onclick = () => change({ action: "model", index: page.selected });
  $("delete").onclick = () => change({ action: "delete", index: page.selected });
  $("mark-reviewed").onclick = () => change({ action: "reviewed", reviewed: !page.record.reviewed });
  $("add-mode").onclick = () => setAdding(!page.adding);
  $("reload").onclick = () => openCell(page.cellId).then(loadCase);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape") setAdding(false); // and drops a box half drawn
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
