// The fixed catalogue of the ADP test shop (used by search.html and item.html).
const CATALOGUE = [
  {id: 1, name: "Brass Telescope", category: "optics", price: 129.00, stock: 4, description: "A 60 mm refractor with a brass tube."},
  {id: 2, name: "Field Binoculars", category: "optics", price: 89.50, stock: 11, description: "8x42 binoculars for birdwatching."},
  {id: 3, name: "Pocket Magnifier", category: "optics", price: 12.25, stock: 40, description: "A folding 10x loupe."},
  {id: 4, name: "Quantum Kettle", category: "kitchen", price: 47.00, stock: 0, description: "Boils exactly one cup of water."},
  {id: 5, name: "Cast Iron Skillet", category: "kitchen", price: 35.90, stock: 7, description: "A 26 cm skillet, pre-seasoned."},
  {id: 6, name: "Copper Kettle", category: "kitchen", price: 64.00, stock: 3, description: "A whistling stovetop kettle."},
  {id: 7, name: "Bamboo Cutting Board", category: "kitchen", price: 18.75, stock: 22, description: "A large end-grain board."},
  {id: 8, name: "Hiking Backpack", category: "outdoor", price: 99.00, stock: 5, description: "A 40 litre pack with a rain cover."},
  {id: 9, name: "Camping Lantern", category: "outdoor", price: 27.40, stock: 14, description: "A rechargeable LED lantern."},
  {id: 10, name: "Trail Compass", category: "outdoor", price: 15.00, stock: 30, description: "A baseplate compass with a mirror."},
  {id: 11, name: "Mechanical Keyboard", category: "office", price: 110.00, stock: 6, description: "Tactile switches, walnut case."},
  {id: 12, name: "Fountain Pen", category: "office", price: 42.00, stock: 9, description: "A steel nib pen with a converter."},
  {id: 13, name: "Desk Lamp", category: "office", price: 38.60, stock: 12, description: "An adjustable lamp with a warm LED."},
  {id: 14, name: "Paper Notebook", category: "office", price: 6.80, stock: 75, description: "A5, dotted, 192 pages."},
  {id: 15, name: "Solar Charger", category: "outdoor", price: 54.30, stock: 8, description: "A foldable 21 W solar panel."}
];

function searchCatalogue(query) {
  const words = String(query || "").toLowerCase().split(/\s+/).filter(Boolean);
  if (!words.length) return [];
  return CATALOGUE.filter(item => {
    const text = (item.name + " " + item.category + " " + item.description).toLowerCase();
    return words.every(w => text.includes(w));
  });
}

function param(name) {
  return new URLSearchParams(window.location.search).get(name) || "";
}

function showWelcome() {
  const el = document.getElementById("welcome");
  const name = window.localStorage.getItem("adp_last_visitor");
  if (el && name) el.textContent = "Welcome back, " + name + "!";
}
