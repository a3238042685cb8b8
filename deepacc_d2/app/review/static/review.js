// The review page: a case's cells, one cell's metaphase with its chromosomes and its
// karyogram; every change goes to the server at once (POST /api/cells/<id>/edit) with the
// cell's version, and the page shows what the server made of it. The server answers each
// change with the change that undoes it; the page keeps those for Ctrl+Z / Ctrl+Shift+Z.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
const LABEL_PX = 13; // label size on the screen, whatever the zoom
const HANDLE_PX = 9; // corner handles of the selected box, on the screen
const DRAG_PX = 4; // a press that moves less than this is a click
const page = {
  classes: [],
  cells: [], // the case's cell lines (/api/case)
  lowScore: 0,
  cellId: null,
  record: null,
  layout: null, // where the karyogram puts each chromosome (/api/cells/<id>/karyogram.json)
  selected: null,
  mode: null, // null, "add" (draw a box) or "split" (draw the dividing line)
  busy: false,
  typed: "", // a class name being typed (classKeys)
  lastPick: null, // where the last click on the boxes was ({x, y} on the screen)
  view: null, // the part of the metaphase shown: {x, y, w, h} in image pixels
  undo: [], // {cell, forward, inverse}: changes made on this page, the last on top
  redo: [],
  known: {}, // cell -> its version after this page's last change to it: where an undo applies
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
  page.cells = view.cells;
  page.lowScore = view.low_score;
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
  page.layout = null;
  page.view = null;
  setMode(null);
  const report = $("cell-report");
  report.href = `/api/cells/${encodeURIComponent(id)}/report.pdf`;
  report.download = `cell_${id}_report.pdf`;
  history.replaceState(null, "", `#${encodeURIComponent(id)}`);
  $("cell").hidden = false;
  $("metaphase").replaceChildren(); // a new image
  if (document.activeElement && document.activeElement !== document.body) {
    document.activeElement.blur(); // the keys work on the cell, not on the button pressed
  }
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
  loadLayout(page.cellId, r.version);

  const svg = $("metaphase");
  if (!svg.querySelector("image")) {
    const img = document.createElementNS(SVG, "image");
    img.setAttribute("href", `/api/cells/${id}/image.png`);
    img.setAttribute("width", r.image.width);
    img.setAttribute("height", r.image.height);
    svg.appendChild(img);
  }
  if (!page.view) page.view = { x: 0, y: 0, w: r.image.width, h: r.image.height };
  for (const el of svg.querySelectorAll("rect, text, line")) el.remove();
  // the largest boxes first: a small box drawn over a large one stays on top, within reach
  for (const i of drawingOrder(r.detections)) {
    const d = r.detections[i];
    const rect = document.createElementNS(SVG, "rect");
    placeRect(rect, d.bbox_xyxy);
    rect.setAttribute("stroke", color(d.class));
    rect.classList.add("chromosome");
    if (d.source === "person") rect.classList.add("person");
    if (i === page.selected) rect.classList.add("selected");
    rect.dataset.index = i;
    rect.dataset.class = d.class;
    rect.addEventListener("click", (e) => {
      e.stopPropagation();
      if (page.mode || drag.justDragged) return;
      pick(e, i);
    });
    const label = document.createElementNS(SVG, "text");
    label.setAttribute("fill", color(d.class));
    label.dataset.index = i;
    label.textContent = d.source === "person" ? d.class : `${d.class} ${Math.round(d.score * 100)}%`;
    svg.append(rect, label);
  }
  setView(page.view);
  select(page.selected !== null && page.selected < r.detections.length ? page.selected : null);
}

function placeRect(rect, [x1, y1, x2, y2]) {
  rect.setAttribute("x", x1);
  rect.setAttribute("y", y1);
  rect.setAttribute("width", x2 - x1);
  rect.setAttribute("height", y2 - y1);
}

const area = ([x1, y1, x2, y2]) => (x2 - x1) * (y2 - y1);

function drawingOrder(detections) {
  // indices, the largest box first (ties in index order): the last drawn is on top
  const size = detections.map((d) => area(d.bbox_xyxy));
  return detections.map((d, i) => i).sort((a, b) => size[b] - size[a] || a - b);
}

function karyogramOrder(detections) {
  // indices as the karyogram shows them: by class, each class's best score first
  const rank = (d) => page.classes.findIndex((k) => k.name === d.class);
  return detections
    .map((d, i) => i)
    .sort((a, b) => rank(detections[a]) - rank(detections[b]) || detections[b].score - detections[a].score || a - b);
}

function pick(event, hit) {
  // a click on the boxes selects the one on top there; a second click on the same spot steps
  // to the next box under it, so that every one of overlapping boxes can be reached
  const [x, y] = imagePoint(event);
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
  for (const rect of document.querySelectorAll("#metaphase rect.chromosome, #karyogram-map rect.chromosome")) {
    rect.classList.toggle("selected", Number(rect.dataset.index) === i);
  }
  drawHandles();
  const d = i === null ? null : page.record.detections[i];
  $("class-select").disabled = $("delete").disabled = $("split").disabled = d === null;
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

// ------------------------------------------------------------------ moving around by keys
function step(by) {
  // the next (or previous) chromosome in the karyogram's order
  const order = karyogramOrder(page.record.detections);
  if (!order.length) return;
  const at = order.indexOf(page.selected);
  const next = at < 0 ? (by > 0 ? 0 : order.length - 1) : (at + by + order.length) % order.length;
  selectAndShow(order[next]);
}

function uncertain(record) {
  // chromosomes scored below the review threshold or named in a review flag
  const flagged = new Set(record.flags.flatMap((f) => f.detections || []));
  return new Set(record.detections.map((d, i) => i).filter((i) => record.detections[i].score < page.lowScore || flagged.has(i)));
}

function nextUncertain() {
  const order = karyogramOrder(page.record.detections);
  const doubtful = uncertain(page.record);
  const at = order.indexOf(page.selected);
  for (let k = 1; k <= order.length; k++) {
    const i = order[(at + k + order.length) % order.length];
    if (doubtful.has(i) && i !== page.selected) return selectAndShow(i);
  }
  say(doubtful.size ? "no other uncertain chromosome in this cell" : "no uncertain chromosome in this cell", true);
}

function selectAndShow(i) {
  page.lastPick = null;
  select(i);
  // zoomed in: bring the chromosome into view
  const v = page.view;
  const [x1, y1, x2, y2] = page.record.detections[i].bbox_xyxy;
  if (x1 < v.x || y1 < v.y || x2 > v.x + v.w || y2 > v.y + v.h) {
    setView({ ...v, x: (x1 + x2 - v.w) / 2, y: (y1 + y2 - v.h) / 2 });
  }
}

async function nextCell(which) {
  // "review": the next cell not marked reviewed; "flagged": the next with its flag up (⚑)
  const wanted = (c) => !c.reviewed && (which === "review" || c.needs_review);
  const at = page.cells.findIndex((c) => c.id === page.cellId);
  for (let k = 1; k < page.cells.length; k++) {
    const c = page.cells[(at + k) % page.cells.length];
    if (wanted(c)) return openCell(c.id);
  }
  say(which === "review" ? "no other cell to review" : "no other flagged cell", true);
}

function classKeys(e) {
  // Typing a class: a select's own type-ahead would pick (and save) a class at the first key,
  // "1" of "16". The keys gather into a name instead; Enter saves it, and so does a name no
  // other class starts with (X, 16, 7). The arrows up and down move through the list.
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
  const move = { ArrowDown: 1, ArrowUp: -1, PageDown: 5, PageUp: -5, Home: -99, End: 99 }[e.key];
  if (move !== undefined) {
    e.preventDefault();
    page.typed = "";
    select.selectedIndex = Math.min(Math.max(select.selectedIndex + move, 0), names.length - 1);
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

function keys(e) {
  // every key of the page: on the cell, whatever has the focus but another field
  if (!page.record) return;
  const t = e.target;
  if (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || (t.tagName === "SELECT" && t.id !== "class-select")) return;
  if ((e.key === "Enter" || e.key === " ") && (t.tagName === "BUTTON" || t.tagName === "A")) return;
  const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
  if (e.ctrlKey || e.metaKey) {
    if (key === "z" || key === "y") {
      e.preventDefault();
      if (key === "y" || e.shiftKey) redo();
      else undo();
    }
    return;
  }
  if (e.altKey) return;
  const typing = page.typed !== "";
  const actions = {
    Tab: () => step(e.shiftKey ? -1 : 1),
    ArrowRight: () => step(1),
    ArrowLeft: () => step(-1),
    u: () => nextUncertain(),
    n: () => nextCell("review"),
    f: () => nextCell("flagged"),
    l: () => toggleLabels(),
    s: () => page.selected !== null && setMode("split"),
    "+": () => zoom(1.5),
    "=": () => zoom(1.5),
    "-": () => zoom(1 / 1.5),
    Delete: () => page.selected !== null && !e.repeat && $("delete").click(),
  };
  if (!typing) actions["0"] = () => setView(null);
  if (e.key === "Escape") {
    const wasMode = page.mode !== null || drag.kind !== null;
    setMode(null); // and drops a box or line half drawn
    if (page.selected !== null && typing) classKeys(e);
    else if (!wasMode && page.selected !== null) select(null);
    return;
  }
  if (actions[key]) {
    e.preventDefault();
    actions[key]();
    return;
  }
  if (page.selected !== null) classKeys(e);
}

// ------------------------------------------------------------------ changes, undo, redo
function saveClass(name) {
  page.typed = "";
  const d = page.record.detections[page.selected];
  if (name === d.class) return say(`chromosome #${page.selected} is a ${name} already`, true);
  edit({ action: "class", index: page.selected, class: name });
}

async function edit(body) {
  // a person's change: kept with its inverse for undo
  const id = page.cellId;
  const base = page.record.version;
  const record = await change(body, base);
  if (record) {
    // the cell changed elsewhere before this change (then reloaded): the older undos are gone
    if (page.known[id] !== undefined && page.known[id] !== base) forget(id);
    page.known[id] = record.version;
    page.redo = [];
    if (record.inverse) page.undo.push({ cell: id, forward: body, inverse: record.inverse });
    undoButtons();
  }
  return record;
}

function forget(cell) {
  page.undo = page.undo.filter((e) => e.cell !== cell);
  page.redo = page.redo.filter((e) => e.cell !== cell);
  undoButtons();
}

async function undo() {
  const entry = page.undo.pop();
  if (!entry) return say("nothing to undo", true);
  if (!(await replay(entry, entry.inverse, "undone"))) return;
  page.redo.push(entry);
  undoButtons();
}

async function redo() {
  const entry = page.redo.pop();
  if (!entry) return say("nothing to redo", true);
  const record = await replay(entry, entry.forward, "redone");
  if (!record) return;
  entry.inverse = record.inverse;
  page.undo.push(entry);
  undoButtons();
}

async function replay(entry, body, done) {
  // an undo or a redo: on the cell it was made on, at the version it left the cell
  while (page.busy) await new Promise((resolve) => setTimeout(resolve, 20)); // keys come fast
  if (entry.cell !== page.cellId) await openCell(entry.cell);
  // the version this page left the cell at: a change made elsewhere since is a conflict
  const record = await change({ ...body }, page.known[entry.cell], done);
  if (record) {
    page.known[entry.cell] = record.version;
  } else if (page.conflict) { // changed elsewhere: its undo and redo are gone
    forget(entry.cell);
  } else {
    (done === "undone" ? page.undo : page.redo).push(entry);
  }
  return record;
}

function undoButtons() {
  $("undo").disabled = !page.undo.length;
  $("redo").disabled = !page.redo.length;
}

async function change(body, version, done = "saved") {
  // one change sent to the server; the cell's new record, or undefined when not saved
  page.conflict = false;
  if (page.busy) { // one change at a time: the next one needs this one's version
    say("the last change is still being saved: try again");
    render();
    return undefined;
  }
  const id = page.cellId;
  page.busy = true;
  try {
    const record = await api(`/api/cells/${encodeURIComponent(id)}/edit`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ...body, version }),
    });
    page.busy = false; // the next change can go: it has this one's version
    if (page.cellId === id) { // still on the cell it changed
      page.record = record;
      page.selected = selectedAfter(body, record);
      say(`${done} (version ${record.version})`, true);
      render();
    }
    await loadCase();
    return record;
  } catch (e) {
    page.conflict = e.status === 409;
    if (page.cellId === id) render(); // the page shows the cell as it is, not the change
    say(e.status === 409 ? `${e.message} — press Reload.` : `not saved: ${e.message}`);
    return undefined;
  } finally {
    page.busy = false;
  }
}

function selectedAfter(body, record) {
  // the chromosome to show selected after a change: the one it made or changed
  const n = record.detections.length;
  if (body.action === "add" || body.action === "split") return n - 1; // name it next
  if (body.action === "delete" || body.action === "reviewed") return null;
  return body.index !== undefined && body.index < n ? body.index : null;
}

async function markReviewed() {
  const reviewing = !page.record.reviewed;
  const record = await edit({ action: "reviewed", reviewed: reviewing });
  if (record && reviewing) await nextCell("review"); // on to the next cell
}

// ------------------------------------------------------------------ zoom, pan, labels
function setView(v) {
  // show part of the metaphase (null: all of it), the image's aspect kept
  const { width, height } = page.record.image;
  const w = Math.min(Math.max(v ? v.w : width, width / 40), width);
  const h = (w * height) / width;
  const x = Math.min(Math.max(v ? v.x : 0, 0), width - w);
  const y = Math.min(Math.max(v ? v.y : 0, 0), height - h);
  page.view = { x, y, w, h };
  const svg = $("metaphase");
  svg.setAttribute("viewBox", `${x} ${y} ${w} ${h}`);
  // labels and handles keep their size on the screen
  const k = unitsPerPixel();
  svg.style.fontSize = `${LABEL_PX * k}px`;
  const boxes = page.record.detections;
  for (const label of svg.querySelectorAll("text")) {
    const [x1, y1] = boxes[Number(label.dataset.index)].bbox_xyxy;
    label.setAttribute("x", x1 + 2 * k);
    label.setAttribute("y", y1 - 3 * k > LABEL_PX * k ? y1 - 3 * k : y1 + LABEL_PX * k);
  }
  drawHandles();
}

function unitsPerPixel() {
  const shown = $("metaphase").getBoundingClientRect().width;
  return shown > 0 ? page.view.w / shown : 1;
}

function zoom(factor, [cx, cy] = [page.view.x + page.view.w / 2, page.view.y + page.view.h / 2]) {
  // zoom by factor, the point (cx, cy) of the image staying where it is on the screen
  const v = page.view;
  const w = v.w / factor;
  const s = w / v.w;
  setView({ x: cx - (cx - v.x) * s, y: cy - (cy - v.y) * s, w, h: v.h * s });
}

function toggleLabels() {
  const off = $("metaphase").classList.toggle("nolabels");
  $("labels").textContent = off ? "Labels: off" : "Labels: on";
}

// ------------------------------------------------------------------ drags on the metaphase
function imagePoint(event, clamp = true) {
  // the event's point in image pixels, clamped to the image
  const svg = $("metaphase");
  const p = new DOMPoint(event.clientX, event.clientY).matrixTransform(svg.getScreenCTM().inverse());
  const r = page.record.image;
  if (!clamp) return [p.x, p.y];
  return [Math.min(Math.max(p.x, 0), r.width), Math.min(Math.max(p.y, 0), r.height)];
}

function insideImage(event) {
  const [x, y] = imagePoint(event, false);
  const r = page.record.image;
  return x >= 0 && y >= 0 && x <= r.width && y <= r.height;
}

// one drag at a time: kind "add" (a box drawn), "split" (a line drawn), "move", "resize"
// (the selected box, by its body or a corner), "pan"
const drag = { kind: null, start: null, client: null, shape: null, box: null, corner: null, view: null, moved: false, justDragged: false };

function endDrag() {
  if (drag.shape) drag.shape.remove();
  Object.assign(drag, { kind: null, start: null, shape: null, box: null, corner: null });
  $("metaphase").classList.remove("panning");
}

function setMode(mode) {
  page.mode = mode;
  endDrag();
  const svg = $("metaphase");
  svg.classList.toggle("adding", mode === "add");
  svg.classList.toggle("splitting", mode === "split");
  $("mode-hint").hidden = !mode;
  $("mode-hint").textContent =
    mode === "add"
      ? "Drag a box around it on the metaphase (Esc to stop)."
      : "Draw the dividing line across the selected box (Esc to stop).";
  $("add-mode").textContent = mode === "add" ? "Stop adding" : "Add a chromosome";
  $("split").textContent = mode === "split" ? "Stop splitting" : "Split";
  drawHandles();
}

function drawHandles() {
  const svg = $("metaphase");
  for (const h of svg.querySelectorAll("rect.handle")) h.remove();
  if (page.selected === null || page.mode || !page.view) return;
  const box = drag.kind === "move" || drag.kind === "resize" ? drag.box : page.record.detections[page.selected].bbox_xyxy;
  const size = HANDLE_PX * unitsPerPixel();
  const [x1, y1, x2, y2] = box;
  [[x1, y1], [x2, y1], [x2, y2], [x1, y2]].forEach(([x, y], corner) => {
    const h = document.createElementNS(SVG, "rect");
    h.classList.add("handle");
    h.dataset.corner = corner;
    placeRect(h, [x - size / 2, y - size / 2, x + size / 2, y + size / 2]);
    svg.appendChild(h);
  });
}

function draggedBox(x, y) {
  // the selected box as the drag has it now
  const [x1, y1, x2, y2] = page.record.detections[page.selected].bbox_xyxy;
  const { width, height } = page.record.image;
  if (drag.kind === "move") {
    const dx = Math.min(Math.max(x - drag.start[0], -x1), width - x2);
    const dy = Math.min(Math.max(y - drag.start[1], -y1), height - y2);
    return [x1 + dx, y1 + dy, x2 + dx, y2 + dy];
  }
  const c = drag.corner; // 0 top left, 1 top right, 2 bottom right, 3 bottom left
  const xs = c === 0 || c === 3 ? [x, x2] : [x1, x];
  const ys = c === 0 || c === 1 ? [y, y2] : [y1, y];
  return [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)];
}

function splitBox([x1, y1, x2, y2], p, q) {
  // the two parts of a box cut along the line through p and q, as the parts' boxes; null
  // when the line leaves no part of a pixel or more on one side
  const side = ([x, y]) => (q[0] - p[0]) * (y - p[1]) - (q[1] - p[1]) * (x - p[0]);
  const corners = [[x1, y1], [x2, y1], [x2, y2], [x1, y2]];
  const parts = [1, -1].map((sign) => {
    const kept = [];
    corners.forEach((a, k) => {
      const b = corners[(k + 1) % 4];
      const sa = sign * side(a);
      const sb = sign * side(b);
      if (sa >= 0) kept.push(a);
      if (sa >= 0 !== sb >= 0) {
        const t = sa / (sa - sb);
        kept.push([a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])]);
      }
    });
    if (!kept.length) return null;
    const xs = kept.map((v) => v[0]);
    const ys = kept.map((v) => v[1]);
    const box = [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)];
    return box[2] - box[0] >= 2 && box[3] - box[1] >= 2 ? box.map(round2) : null;
  });
  if (!parts[0] || !parts[1]) return null;
  // the upper part first (the left one, cut top to bottom): it keeps the chromosome's answer
  const centre = (b) => [(b[0] + b[2]) / 2, (b[1] + b[3]) / 2];
  const [a, b] = parts.map(centre);
  const upperFirst = Math.abs(a[1] - b[1]) > 1 ? a[1] < b[1] : a[0] <= b[0];
  return upperFirst ? parts : [parts[1], parts[0]];
}

const round2 = (v) => Math.round(v * 100) / 100;

function drawing() {
  const svg = $("metaphase");
  svg.addEventListener("pointerdown", (e) => {
    if (e.button !== 0 && e.button !== 1) return;
    const t = e.target;
    drag.moved = false;
    drag.client = [e.clientX, e.clientY];
    if ((page.mode || e.shiftKey) && e.button === 0) { // Shift+drag: a new box, no mode needed
      e.preventDefault();
      endDrag();
      drag.kind = page.mode || "add";
      drag.start = imagePoint(e);
      drag.shape = document.createElementNS(SVG, drag.kind === "add" ? "rect" : "line");
      drag.shape.classList.add("drawing");
      svg.appendChild(drag.shape);
    } else if (t.classList.contains("handle") && e.button === 0) {
      e.preventDefault();
      Object.assign(drag, { kind: "resize", corner: Number(t.dataset.corner), start: imagePoint(e) });
    } else if (t.matches("rect.chromosome.selected") && e.button === 0) {
      e.preventDefault();
      Object.assign(drag, { kind: "move", start: imagePoint(e) });
    } else if (e.button === 1 || !t.matches("rect.chromosome")) {
      e.preventDefault();
      Object.assign(drag, { kind: "pan", view: { ...page.view } });
    }
  });
  svg.addEventListener(
    "wheel",
    (e) => {
      e.preventDefault();
      zoom(Math.exp(-e.deltaY * 0.002), imagePoint(e, false));
    },
    { passive: false },
  );
  // on the whole page: the pointer may leave the image while the button is down
  document.addEventListener("pointermove", (e) => {
    if (!drag.kind) return;
    if (Math.hypot(e.clientX - drag.client[0], e.clientY - drag.client[1]) >= DRAG_PX) drag.moved = true;
    if (drag.kind === "pan") {
      if (!drag.moved) return;
      svg.classList.add("panning");
      const k = unitsPerPixel();
      setView({ ...drag.view, x: drag.view.x - (e.clientX - drag.client[0]) * k, y: drag.view.y - (e.clientY - drag.client[1]) * k });
      return;
    }
    const [x, y] = imagePoint(e);
    const start = drag.start;
    if (drag.kind === "add") {
      placeRect(drag.shape, [Math.min(x, start[0]), Math.min(y, start[1]), Math.max(x, start[0]), Math.max(y, start[1])]);
    } else if (drag.kind === "split") {
      drag.shape.setAttribute("x1", start[0]);
      drag.shape.setAttribute("y1", start[1]);
      drag.shape.setAttribute("x2", x);
      drag.shape.setAttribute("y2", y);
    } else if (drag.moved) { // move, resize
      drag.box = draggedBox(x, y);
      placeRect(svg.querySelector(`rect.chromosome[data-index='${page.selected}']`), drag.box);
      drawHandles();
    }
  });
  document.addEventListener("pointerup", async (e) => {
    if (!drag.kind) return;
    const { kind, start, moved } = drag;
    const box = drag.box;
    endDrag(); // every release ends the drag, wherever it is
    drag.justDragged = moved && kind !== "add" && kind !== "split";
    setTimeout(() => (drag.justDragged = false), 0); // the click that follows this release
    if (kind === "pan") return;
    if (kind === "move" || kind === "resize") {
      if (!moved || !box) return;
      const bbox = box.map(round2);
      if (bbox[2] - bbox[0] < 1 || bbox[3] - bbox[1] < 1) return render();
      await edit({ action: "box", index: page.selected, bbox_xyxy: bbox });
      return;
    }
    if (!insideImage(e)) {
      say(`released outside the metaphase: nothing ${kind === "add" ? "added" : "split"} (Esc stops)`);
      return;
    }
    const [x, y] = imagePoint(e);
    if (kind === "split") {
      if (Math.hypot(x - start[0], y - start[1]) < 2) return; // a click, not a line
      const parts = splitBox(page.record.detections[page.selected].bbox_xyxy, start, [x, y]);
      if (!parts) return say("the line does not cut the box in two: draw it across the box");
      const index = page.selected;
      setMode(null);
      await edit({ action: "split", index, boxes: parts });
      return;
    }
    const bbox = [Math.min(x, start[0]), Math.min(y, start[1]), Math.max(x, start[0]), Math.max(y, start[1])];
    if (bbox[2] - bbox[0] < 2 || bbox[3] - bbox[1] < 2) return; // a click, not a box
    setMode(null);
    await edit({ action: "add", bbox_xyxy: bbox.map(round2), class: $("add-class").value });
  });
  document.addEventListener("pointercancel", endDrag);
  svg.addEventListener("click", () => {
    if (page.mode || drag.justDragged) return;
    page.lastPick = null;
    select(null);
  });
}

// ------------------------------------------------------------------ the karyogram
async function loadLayout(id, version) {
  if (page.layout && page.layout.cell === id && page.layout.version === version) return;
  let layout;
  try {
    layout = await api(`/api/cells/${encodeURIComponent(id)}/karyogram.json?v=${version}`);
  } catch (e) {
    return; // the karyogram picture says what is wrong
  }
  if (page.cellId !== id || page.record.version !== layout.version) return; // changed meanwhile
  page.layout = { ...layout, cell: id };
  drawKaryogramMap();
}

function drawKaryogramMap() {
  // clickable places over the karyogram picture: a rectangle per slot, one per chromosome
  const map = $("karyogram-map");
  const layout = page.layout;
  map.setAttribute("viewBox", `0 0 ${layout.width} ${layout.height}`);
  const rects = [];
  for (const [name, slot] of Object.entries(layout.slots)) {
    const r = document.createElementNS(SVG, "rect");
    placeRect(r, slot);
    r.classList.add("slot");
    r.dataset.class = name;
    rects.push(r);
  }
  layout.chromosomes.forEach((place, i) => {
    const r = document.createElementNS(SVG, "rect");
    placeRect(r, [place[0] - 2, place[1] - 2, place[2] + 2, place[3] + 2]);
    r.classList.add("chromosome");
    r.classList.toggle("selected", i === page.selected);
    r.dataset.index = i;
    r.dataset.class = page.record.detections[i].class;
    rects.push(r);
  });
  map.replaceChildren(...rects);
}

const kdrag = { index: null, client: null, moved: false, ghost: null, target: null };

function karyogramDrags() {
  // a click on a chromosome selects it; dragged onto a slot it takes that class, onto another
  // chromosome the two exchange classes (one change)
  const map = $("karyogram-map");
  map.addEventListener("pointerdown", (e) => {
    const t = e.target;
    if (e.button !== 0 || !t.matches("rect.chromosome")) return;
    e.preventDefault();
    Object.assign(kdrag, { index: Number(t.dataset.index), client: [e.clientX, e.clientY], moved: false });
  });
  document.addEventListener("pointermove", (e) => {
    if (kdrag.index === null) return;
    const dx = e.clientX - kdrag.client[0];
    const dy = e.clientY - kdrag.client[1];
    if (!kdrag.moved && Math.hypot(dx, dy) < DRAG_PX) return;
    kdrag.moved = true;
    const scale = page.layout.width / map.getBoundingClientRect().width;
    if (!kdrag.ghost) {
      kdrag.ghost = map.querySelector(`rect.chromosome[data-index='${kdrag.index}']`).cloneNode();
      kdrag.ghost.setAttribute("class", "ghost");
      map.appendChild(kdrag.ghost);
    }
    kdrag.ghost.setAttribute("transform", `translate(${dx * scale} ${dy * scale})`);
    setTarget(dropTarget(e));
  });
  document.addEventListener("pointerup", (e) => {
    if (kdrag.index === null) return;
    const { index, moved } = kdrag;
    const target = moved ? dropTarget(e) : null;
    endKaryogramDrag();
    if (!moved) return selectAndShow(index);
    if (!target) return;
    const d = page.record.detections[index];
    if (target.matches("rect.chromosome")) {
      const other = Number(target.dataset.index);
      const b = page.record.detections[other];
      if (b.class === d.class) return say(`both are ${d.class}s: nothing to swap`, true);
      edit({ action: "swap", index, other });
    } else if (target.dataset.class === d.class) {
      say(`chromosome #${index} is a ${d.class} already`, true);
    } else {
      edit({ action: "class", index, class: target.dataset.class });
    }
  });
  document.addEventListener("pointercancel", endKaryogramDrag);
}

function dropTarget(e) {
  const under = document.elementFromPoint(e.clientX, e.clientY);
  if (!under || !under.closest("#karyogram-map") || under.tagName !== "rect") return null;
  if (under.matches("rect.chromosome") && Number(under.dataset.index) === kdrag.index) return null;
  return under.matches("rect.chromosome, rect.slot") ? under : null;
}

function setTarget(target) {
  if (kdrag.target) kdrag.target.classList.remove("target");
  kdrag.target = target;
  if (target) target.classList.add("target");
}

function endKaryogramDrag() {
  setTarget(null);
  if (kdrag.ghost) kdrag.ghost.remove();
  Object.assign(kdrag, { index: null, client: null, moved: false, ghost: null });
}

async function main() {
  page.classes = await api("/api/classes");
  classOptions($("class-select"));
  classOptions($("add-class"));
  // a class picked from the open list saves at once; typed ones wait for the whole name
  $("class-select").onchange = () => saveClass($("class-select").value);
  $("class-select").addEventListener("blur", () => {
    if (page.typed) say("");
    page.typed = "";
  });
  $("to-model").onclick = () => edit({ action: "model", index: page.selected });
  $("delete").onclick = () => edit({ action: "delete", index: page.selected });
  $("mark-reviewed").onclick = markReviewed;
  $("add-mode").onclick = () => setMode(page.mode === "add" ? null : "add");
  $("split").onclick = () => setMode(page.mode === "split" ? null : "split");
  $("undo").onclick = undo;
  $("redo").onclick = redo;
  $("zoom-in").onclick = () => zoom(1.5);
  $("zoom-out").onclick = () => zoom(1 / 1.5);
  $("zoom-fit").onclick = () => setView(null);
  $("labels").onclick = toggleLabels;
  $("reload").onclick = () => openCell(page.cellId).then(loadCase);
  document.addEventListener("keydown", keys);
  window.addEventListener("resize", () => page.record && setView(page.view));
  drawing();
  karyogramDrags();
  const view = await loadCase();
  const wanted = decodeURIComponent(location.hash.slice(1));
  const first = view.cells.find((c) => c.id === wanted) || view.cells[0];
  if (first) await openCell(first.id);
  else say("This case has no cells.");
}

main().catch((e) => say(e.message));
