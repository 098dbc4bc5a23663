// The world map: every country coloured by its home region under the policy in force, the
// regions as points (role, health, users homed) and running migrations as arcs from the
// region users leave to the regions they move to.
import { geoCentroid, geoEqualEarth, geoGraticule10, geoInterpolate, geoPath, select } from 'd3';
import { feature } from 'topojson-client';
import countriesCodes from 'i18n-iso-countries';
import world from 'world-atlas/countries-110m.json';
import { KNOWN_PLACES } from './places.js';
import { int } from './format.js';

const WIDTH = 960;
const HEIGHT = 480;

// The Natural Earth shapes carry ISO 3166-1 numeric ids; the policy speaks alpha-2.
const COUNTRIES = feature(world, world.objects.countries).features.map((f) => ({
  feature: f,
  alpha2: f.id ? countriesCodes.numericToAlpha2(f.id) : undefined,
}));

export class WorldMap {
  constructor(figure) {
    // Centred on the Pacific: the legacy region (beijing) and the regions its users move to
    // (oregon, singapore) are then drawn without crossing the map's edge.
    this.projection = geoEqualEarth().rotate([-150, 0]).fitSize([WIDTH, HEIGHT], { type: 'Sphere' });
    this.path = geoPath(this.projection);
    this.svg = select(figure)
      .append('svg')
      .attr('viewBox', `0 0 ${WIDTH} ${HEIGHT}`)
      .attr('role', 'img')
      .attr('aria-labelledby', 'map-svg-title map-svg-desc');
    this.svg.append('title').attr('id', 'map-svg-title').text('World map of home regions');
    this.desc = this.svg.append('desc').attr('id', 'map-svg-desc');
    this.svg.append('path').attr('class', 'sphere').attr('d', this.path({ type: 'Sphere' }));
    this.svg.append('path').attr('class', 'graticule').attr('d', this.path(geoGraticule10()));
    this.countries = this.svg
      .append('g')
      .attr('class', 'countries')
      .selectAll('path')
      .data(COUNTRIES)
      .join('path')
      .attr('d', (d) => this.path(d.feature))
      .attr('data-country', (d) => d.alpha2 || '');
    this.countries.append('title');
    this.arcs = this.svg.append('g').attr('class', 'arcs');
    this.points = this.svg.append('g').attr('class', 'points');
  }

  // Where each region is drawn: a known place, else the middle of the countries it homes.
  places(regions, homeOf) {
    const out = new Map();
    for (const r of regions) {
      if (KNOWN_PLACES[r.name]) {
        out.set(r.name, KNOWN_PLACES[r.name]);
        continue;
      }
      const mine = COUNTRIES.filter((c) => homeOf(c.alpha2) === r.name).map((c) => c.feature);
      if (mine.length > 0) out.set(r.name, geoCentroid({ type: 'FeatureCollection', features: mine }));
    }
    return out;
  }

  update(data, colorOf) {
    const policy = data.policy || { countries: {}, default_region: '' };
    const homeOf = (alpha2) => (alpha2 && policy.countries[alpha2]) || policy.default_region;
    this.countries
      .attr('fill', (d) => colorOf(homeOf(d.alpha2)))
      .attr('data-home', (d) => homeOf(d.alpha2))
      .select('title')
      .text((d) => `${d.feature.properties.name}: home region ${homeOf(d.alpha2)}`);

    const places = this.places(data.regions, homeOf);
    const placed = data.regions.filter((r) => places.has(r.name));
    this.drawArcs(data.migrations || [], places);
    this.drawPoints(placed, places, colorOf);

    const counts = new Map();
    for (const c of COUNTRIES) counts.set(homeOf(c.alpha2), (counts.get(homeOf(c.alpha2)) || 0) + 1);
    this.desc.text(
      data.regions
        .map((r) =>
          r.role === 'edge'
            ? `${r.name}: edge region, ${r.health}`
            : `${r.name}: home of ${counts.get(r.name) || 0} countries shown, ${int(r.users_homed)} users, ${r.health}`,
        )
        .join('; '),
    );
  }

  drawPoints(regions, places, colorOf) {
    const xy = (r) => this.projection(places.get(r.name));
    // Labels are pushed down when they would overlap one drawn before (oregon and
    // california are neighbours).
    const taken = [];
    const labelY = new Map();
    for (const r of [...regions].sort((a, b) => xy(a)[1] - xy(b)[1])) {
      const [x, y] = xy(r);
      let ly = y - 10;
      while (taken.some(([tx, ty]) => Math.abs(tx - x) < 170 && Math.abs(ty - ly) < 40)) ly += 40;
      taken.push([x, ly]);
      labelY.set(r.name, ly - y);
    }
    const g = this.points
      .selectAll('g.region')
      .data(regions, (r) => r.name)
      .join((enter) => {
        const e = enter.append('g').attr('class', 'region');
        e.append('path').attr('class', 'marker');
        const t = e.append('text').attr('class', 'label').attr('x', 10);
        t.append('tspan').attr('class', 'name');
        t.append('tspan').attr('class', 'detail').attr('x', 10).attr('dy', '1.15em');
        return e;
      })
      .attr('data-region', (r) => r.name)
      .attr('data-health', (r) => r.health)
      .attr('transform', (r) => `translate(${xy(r).join(',')})`);
    g.select('path.marker')
      .attr('d', (r) => (r.role === 'edge' ? 'M0,-8L8,0L0,8L-8,0Z' : 'M0,-7A7,7 0 1,1 0,7A7,7 0 1,1 0,-7Z'))
      .attr('fill', (r) => (r.health === 'ok' ? (r.role === 'edge' ? '#ffffff' : colorOf(r.name)) : '#9e9e9e'))
      .attr('stroke-dasharray', (r) => (r.health === 'ok' ? null : '3,2'));
    g.select('text.label').attr('y', (r) => labelY.get(r.name));
    g.select('tspan.name').text((r) => r.name);
    g.select('tspan.detail').text((r) => {
      const health = r.health === 'ok' ? '' : ` · ${r.health}`;
      return r.role === 'edge' ? `edge${health}` : `${int(r.users_homed)} users${health}`;
    });
  }

  drawArcs(migrations, places) {
    const arcs = [];
    for (const m of migrations) {
      if (m.state !== 'running' || !places.has(m.from)) continue;
      for (const [to, d] of Object.entries(m.destinations || {})) {
        if (!places.has(to)) continue;
        arcs.push({ key: `${m.id}>${to}`, from: places.get(m.from), to: places.get(to), moved: d.moved, users: d.users });
      }
    }
    const g = this.arcs
      .selectAll('g.arc')
      .data(arcs, (a) => a.key)
      .join((enter) => {
        const e = enter.append('g').attr('class', 'arc');
        e.append('path');
        e.append('text');
        return e;
      });
    // Great-circle paths, the way the data travels.
    g.select('path').attr('d', (a) => this.path({ type: 'LineString', coordinates: [a.from, a.to] }));
    g.select('text')
      .attr('transform', (a) => `translate(${this.projection(geoInterpolate(a.from, a.to)(0.5)).join(',')})`)
      .text((a) => `${int(a.moved)} of ${int(a.users)} moved`);
  }
}
