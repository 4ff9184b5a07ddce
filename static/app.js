// The demo page: every answer comes from the guest; this script only shows it.
"use strict";

const FIELDS = ["order_id", "product_id", "quantity", "amount", "shipping", "tax", "shipping_address"];
const LABELS = { order_id: "Order id", product_id: "Product id", quantity: "Quantity", amount: "Amount",
                 shipping: "Shipping", tax: "Tax", shipping_address: "Shipping address" };
const PAGE = 50;
const RETRY_MS = 2000;

const state = { offset: 0, total: 0, retry: null };
const $ = (id) => document.getElementById(id);

class Unavailable extends Error {}

/** One call to the API; shows which engine ran the guest and how long it took. */
async function api(method, path, body) {
  const init = { method, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new Unavailable("The service cannot be reached.");
  }
  showSandbox(response);
  if (response.status === 503) {
    throw new Unavailable("The database is unavailable.");
  }
  if (response.status >= 500) {
    const problem = await response.json().catch(() => ({}));
    throw new Error(problem.detail || `The service answered ${response.status}.`);
  }
  const data = response.status === 204 ? null : await response.json();
  return { status: response.status, data };
}

function showSandbox(response) {
  const engine = response.headers.get("X-Wasm-Engine");
  if (!engine) return;
  const timing = {};
  for (const part of (response.headers.get("Server-Timing") || "").split(",")) {
    const m = part.trim().match(/^(\w+);dur=([\d.]+)/);
    if (m) timing[m[1]] = Number(m[2]);
  }
  const ms = (v) => (v === undefined ? "?" : `${v.toFixed(2)} ms`);
  $("sandbox").textContent =
    `Last answer: guest ran on ${engine} · ${ms(timing.wasm)} in the sandbox · ${ms(timing.db)} in the database`;
  $("sandbox").dataset.engine = engine;
}

function setOffline(message) {
  const banner = $("offline");
  if (message) {
    banner.textContent = `${message} Retrying every ${RETRY_MS / 1000} seconds; the page recovers by itself.`;
    banner.hidden = false;
    if (!state.retry) state.retry = setInterval(load, RETRY_MS);
  } else {
    banner.hidden = true;
    banner.textContent = "";
    if (state.retry) clearInterval(state.retry);
    state.retry = null;
  }
}

async function guarded(work) {
  try {
    await work();
  } catch (err) {
    if (err instanceof Unavailable) setOffline(err.message);
    else setOffline(err.message);
  }
}

/** What the user typed, as JSON: numbers where they look like numbers, the rest as typed. */
function readValue(field, raw) {
  const text = raw.trim();
  if (field === "shipping_address") return raw;
  if (text === "") return undefined;
  return /^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(text) ? Number(text) : text;
}

function collect(prefix, fields) {
  const order = {};
  for (const field of fields) {
    const value = readValue(field, $(`${prefix}-${field}`).value);
    if (value !== undefined && !(field === "order_id" && value === "")) order[field] = value;
  }
  return order;
}

function clearErrors(prefix, fields) {
  for (const field of fields) {
    const input = $(`${prefix}-${field}`);
    if (input) input.removeAttribute("aria-invalid");
    const slot = $(`${prefix}-${field}-error`);
    if (slot) slot.textContent = "";
  }
}

/** Puts each of the guest's field errors next to its field; returns what had no field. */
function showErrors(prefix, problem) {
  const unplaced = [];
  let first = null;
  for (const error of problem.errors || []) {
    const slot = $(`${prefix}-${error.field}-error`);
    if (slot) {
      slot.textContent = `${LABELS[error.field] || error.field} ${error.message}`;
      const input = $(`${prefix}-${error.field}`);
      input.setAttribute("aria-invalid", "true");
      first = first || input;
    } else {
      unplaced.push(`${error.field} ${error.message}`);
    }
  }
  if (first) first.focus();
  if (!(problem.errors || []).length) unplaced.push(problem.detail || problem.title || "The request failed.");
  return unplaced;
}

async function load() {
  await guarded(async () => {
    const { data } = await api("GET", `api/orders?limit=${PAGE}&offset=${state.offset}`);
    setOffline(null);
    if (data.items.length === 0 && data.total > 0 && state.offset > 0) {
      state.offset = Math.max(0, state.offset - PAGE);
      return load();
    }
    state.total = data.total;
    render(data.items);
  });
  // Until the first answer the page says it is loading; after a failure the banner says why.
  $("loading").hidden = true;
}

const money = (v) => Number(v).toFixed(2);

function render(orders) {
  const body = document.querySelector("#orders tbody");
  body.replaceChildren(...orders.map(rowFor));
  $("empty").hidden = state.total !== 0;
  $("orders").hidden = state.total === 0;
  $("pager").hidden = state.total === 0;
  const last = Math.min(state.offset + PAGE, state.total);
  $("page-info").textContent = state.total ? `Orders ${state.offset + 1}–${last} of ${state.total}` : "";
  $("prev").disabled = state.offset === 0;
  $("next").disabled = last >= state.total;
}

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function button(text, cls, onClick, label) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  if (cls) b.className = cls;
  if (label) b.setAttribute("aria-label", label);
  b.addEventListener("click", onClick);
  return b;
}

function rowFor(order) {
  const tr = document.createElement("tr");
  tr.dataset.id = order.order_id;
  tr.append(
    cell(order.order_id, "num"), cell(order.product_id, "num"), cell(order.quantity, "num"),
    cell(money(order.amount), "num"), cell(money(order.shipping), "num"), cell(money(order.tax), "num"),
    cell(order.shipping_address),
  );
  const actions = cell("", "actions");
  actions.append(
    button("Edit", "secondary", () => edit(tr, order), `Edit order ${order.order_id}`),
    button("Delete", "danger", () => confirmDelete(tr, order), `Delete order ${order.order_id}`),
  );
  tr.append(actions);
  return tr;
}

function edit(tr, order) {
  const prefix = `edit-${order.order_id}`;
  tr.className = "editing";
  tr.replaceChildren(cell(order.order_id, "num"));
  for (const field of FIELDS.slice(1)) {
    const td = document.createElement("td");
    const label = document.createElement("label");
    label.className = "visually-hidden";
    label.htmlFor = `${prefix}-${field}`;
    label.textContent = `${LABELS[field]} of order ${order.order_id}`;
    const input = document.createElement("input");
    input.id = `${prefix}-${field}`;
    input.value = ["amount", "shipping", "tax"].includes(field) ? money(order[field]) : order[field];
    input.setAttribute("aria-describedby", `${prefix}-${field}-error`);
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter") save();
      if (e.key === "Escape") load();
    });
    const error = document.createElement("span");
    error.id = `${prefix}-${field}-error`;
    error.className = "field-error";
    td.append(label, input, error);
    tr.append(td);
  }
  const save = () => guarded(async () => {
    clearErrors(prefix, FIELDS);
    const changes = collect(prefix, FIELDS.slice(1));
    const { status, data } = await api("PATCH", `api/orders/${order.order_id}`, changes);
    setOffline(null);
    if (status === 200) return load();
    const rest = showErrors(prefix, data);
    if (rest.length) tr.querySelector(".field-error").textContent = rest.join("; ");
  });
  const actions = cell("", "actions");
  actions.append(button("Save", "", save, `Save order ${order.order_id}`), button("Cancel", "secondary", load));
  tr.append(actions);
  tr.querySelector("input").focus();
}

function confirmDelete(tr, order) {
  tr.className = "confirming";
  const actions = tr.querySelector(".actions");
  const question = document.createElement("span");
  question.textContent = `Delete order ${order.order_id}? `;
  const yes = button("Yes, delete", "danger", () => guarded(async () => {
    await api("DELETE", `api/orders/${order.order_id}`);
    setOffline(null);
    await load();
    $("list-heading").focus();
  }));
  const no = button("Keep it", "secondary", () => { tr.replaceWith(rowFor(order)); });
  actions.replaceChildren(question, yes, no);
  no.focus();
}

async function create(event) {
  event.preventDefault();
  clearErrors("new", FIELDS);
  $("new-form-error").hidden = true;
  await guarded(async () => {
    const { status, data } = await api("POST", "api/orders", collect("new", FIELDS));
    setOffline(null);
    if (status === 201) {
      event.target.reset();
      state.offset = Math.floor(state.total / PAGE) * PAGE; // where the new order is likely to be
      await load();
      $("new-order_id").focus();
      return;
    }
    const rest = showErrors("new", data);
    if (rest.length) {
      $("new-form-error").textContent = rest.join("; ");
      $("new-form-error").hidden = false;
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  $("list-heading").tabIndex = -1;
  $("new-order").addEventListener("submit", create);
  const turn = (offset) => {
    state.offset = offset;
    $("prev").disabled = $("next").disabled = true; // until this page's answer
    load();
  };
  $("prev").addEventListener("click", () => turn(Math.max(0, state.offset - PAGE)));
  $("next").addEventListener("click", () => turn(state.offset + PAGE));
  load();
});
