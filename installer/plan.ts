// A plan: what install or remove will create, change or remove, printed before anything
// is applied (and all that --dry-run does).

export type Action = 'create' | 'change' | 'remove' | 'keep' | 'run';

export interface PlanItem {
  action: Action;
  what: string;
  /** The exact command line that applies it (IIS), if any. */
  command?: string;
}

export interface Plan {
  verb: 'install' | 'remove';
  backend: 'iis' | 'local';
  /** `local host config <file>` or `IIS site "<name>"`. */
  target: string;
  notes: string[];
  items: PlanItem[];
}

const MARK: Record<Action, string> = { create: '+', change: '~', remove: '-', keep: '=', run: '>' };

export function changes(plan: Plan): number {
  return plan.items.filter((i) => i.action !== 'keep').length;
}

export function formatPlan(plan: Plan, name: string, o: { verbose?: boolean } = {}): string {
  const lines = [`plan: ${plan.verb} ${name} ${plan.verb === 'install' ? 'into' : 'from'} ${plan.target}`];
  for (const n of plan.notes) lines.push(`  note: ${n}`);
  const shown = plan.items.filter((i) => o.verbose || i.action !== 'keep');
  for (const item of shown) {
    lines.push(`  ${MARK[item.action]} ${item.what}`);
    if (item.command) lines.push(`      ${item.command}`);
  }
  if (changes(plan) === 0) lines.push(`  nothing to change: ${plan.verb === 'install' ? 'already installed' : 'nothing installed'} as planned`);
  return lines.join('\n');
}
