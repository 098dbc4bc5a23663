// Where a region is drawn. The cluster config names regions but does not place them, so
// well-known names have a spot here; any other home region is drawn at the middle of the
// countries it homes (a fifth region needs no change here to appear).
export const KNOWN_PLACES = {
  beijing: [116.4, 39.9],
  oregon: [-119.7, 45.8],
  california: [-121.9, 37.4],
  singapore: [103.8, 1.35],
  frankfurt: [8.68, 50.11],
  ireland: [-6.26, 53.35],
  london: [-0.13, 51.5],
  paris: [2.35, 48.86],
  stockholm: [18.07, 59.33],
  virginia: [-77.5, 38.9],
  ohio: [-82.99, 39.96],
  montreal: [-73.57, 45.5],
  'sao-paulo': [-46.63, -23.55],
  saopaulo: [-46.63, -23.55],
  tokyo: [139.69, 35.69],
  seoul: [126.98, 37.57],
  mumbai: [72.88, 19.08],
  sydney: [151.21, -33.87],
  'hong-kong': [114.17, 22.32],
  hongkong: [114.17, 22.32],
  shanghai: [121.47, 31.23],
  jakarta: [106.85, -6.21],
  'cape-town': [18.42, -33.92],
  bahrain: [50.58, 26.07],
};

// Okabe-Ito colours: told apart with the common colour-vision deficiencies.
export const PALETTE = ['#0072B2', '#E69F00', '#009E73', '#CC79A7', '#56B4E9', '#D55E00', '#F0E442'];
