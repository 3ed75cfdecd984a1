import { lazy, type ReactNode, Suspense, useEffect } from 'react';
import { AdminPage } from '../features/admin/admin-page';
import { LoginPage } from '../features/auth/login-page';
import { PasswordPage } from '../features/auth/password-page';
import { UserMenu } from '../features/auth/user-menu';
import { LinkPage } from '../features/share/link-page';
import { ShareButton } from '../features/share/share-dialog';
import { StudyListPage } from '../features/study-list/study-list-page';
import { loadStudy } from '../features/viewer/study-loader';
import { type Language, type MessageKey, setLanguage, type T, useLanguage, useT } from '../i18n';
import { formatDate } from '../i18n/dates';
import { describeError } from '../lib/describe-error';
import type { Me } from '../lib/server-api';
import { type AuthState, authHint, getAuth, startAuth, useAuth } from '../lib/session';
import { matchRoute, navigate, type Route, useLocation } from './router';

// Cornerstone (about 1 MB gzipped) is only loaded for the viewer route.
const importViewerPage = () => import('../features/viewer/viewer-page');
const ViewerPage = lazy(importViewerPage);

// Whether the server asks for sign-in, and who is signed in: asked at once, before the first render.
void startAuth();

// A study's address: the viewer's code is on its way already (the server preloads it with the page);
// run it now, while the first requests travel, rather than after the first render. The study's
// requests start now too (as the first render would start them).
{
  const first = matchRoute(new URL(window.location.href));
  if (first.name === 'viewer' && mayPreload(effectiveAuth(getAuth()), first.studyUID)) {
    loadStudy(first.studyUID);
  }
  if (first.name === 'viewer' || first.name === 'link') void importViewerPage();
}

/**
 * The sign-in state to render with. Until the server has answered, a browser whose last visit found
 * no sign-in (PACS_AUTH=off) goes on at once, as the viewer always did.
 */
function effectiveAuth(auth: AuthState): AuthState {
  return auth.status === 'loading' && authHint() === 'off' ? { status: 'off' } : auth;
}

/** Whether the study's requests may start before the viewer's code has arrived. */
function mayPreload(auth: AuthState, study: string): boolean {
  if (auth.status === 'off') return true;
  if (auth.status === 'signed-in') {
    const me = auth.me;
    if (me.mustChangePassword || me.role === 'modality') return false;
    return me.role !== 'link' || me.studyInstanceUID === study;
  }
  if (auth.status === 'loading') {
    // Signed in last time (or never here: the archive may well need no sign-in): the cookie, if any,
    // goes with the requests. Were they refused, the viewer asks again once signed in.
    const hint = authHint();
    return hint === '' || hint === 'user' || hint === `link:${study}`;
  }
  return false;
}

const canShare = (me: Me) => me.role === 'radiologist' || me.role === 'administrator';

function titleKey(route: Route, auth: AuthState): MessageKey {
  if (route.name === 'link' || (auth.status === 'signed-in' && auth.me.role === 'link'))
    return 'app.titleShared';
  if (auth.status === 'signed-out') return 'app.titleSignIn';
  if (route.name === 'admin' && auth.status === 'signed-in') return 'app.titleAdmin';
  return route.name === 'viewer' ? 'app.titleViewer' : 'app.titleStudies';
}

/** Replaces the address (a share link's visitor asking for the study list gets the study). */
function Redirect({ to }: { to: string }) {
  useEffect(() => navigate(to, { replace: true }), [to]);
  return null;
}

/** A page that is refused, in words, with the way on. */
function Refusal({ message, action }: { message: string; action?: { label: string; to: string } }) {
  return (
    <div className="page-message refused" role="alert" data-testid="refused">
      <p>{message}</p>
      {action && (
        <button type="button" onClick={() => navigate(action.to)}>
          {action.label}
        </button>
      )}
    </div>
  );
}

export function App() {
  const location = useLocation();
  const route = matchRoute(location);
  const t = useT();
  const lang = useLanguage();
  const auth = effectiveAuth(useAuth());
  const me = auth.status === 'signed-in' ? auth.me : undefined;
  const linkVisitor = me?.role === 'link';

  // Start the study's requests at once, in parallel with loading the viewer's code.
  if (route.name === 'viewer' && mayPreload(auth, route.studyUID)) loadStudy(route.studyUID);
  if (route.name === 'viewer' || route.name === 'link') void importViewerPage();

  const title = titleKey(route, auth);
  useEffect(() => {
    document.title = t(title);
  }, [title, t]);

  // A share link's visitor reads one study: the patient's other studies are not listed (priors).
  const viewer = (study: string, opts: { home: boolean; share: boolean; priors: boolean }) => (
    <Suspense fallback={<div className="viewport-message">{t('viewer.loadingStudy')}</div>}>
      <ViewerPage
        key={study}
        studyUID={study}
        home={opts.home}
        priors={opts.priors}
        toolbarEnd={opts.share ? <ShareButton studyUID={study} /> : undefined}
      />
    </Suspense>
  );

  return (
    <div className={`app route-${route.name}`}>
      <header className="app-header">
        {linkVisitor || route.name === 'link' ? (
          <span className="brand">{t('app.title')}</span>
        ) : (
          <a
            className="brand"
            href="/"
            onClick={(e) => {
              e.preventDefault();
              navigate('/');
            }}
          >
            {t('app.title')}
          </a>
        )}
        {headerTitle(route, auth, t)}
        <span className="spacer" />
        <label className="lang">
          <span>{t('app.language')}</span>
          <select
            value={lang}
            onChange={(e) => setLanguage(e.target.value as Language)}
            data-testid="language"
          >
            <option value="vi" lang="vi">
              Tiếng Việt
            </option>
            <option value="en" lang="en">
              English
            </option>
          </select>
        </label>
        {me && !linkVisitor && <UserMenu me={me} />}
      </header>
      <main>{content()}</main>
    </div>
  );

  function content(): ReactNode {
    // A share link is opened by anyone, signed in or not.
    if (route.name === 'link') return <LinkPage key={route.token} token={route.token} />;
    switch (auth.status) {
      case 'loading':
        return <p className="status page-status">{t('auth.loading')}</p>;
      case 'unreachable':
        return (
          <div className="page-message refused" role="alert">
            <p>{t('auth.unreachable', { message: describeError(auth.error, t) })}</p>
            <button type="button" onClick={() => void startAuth()}>
              {t('error.retry')}
            </button>
          </div>
        );
      case 'signed-out':
        // The share link this tab was opened with has ended: its page says why (or opens it again).
        if (auth.linkToken) return <LinkPage key={auth.linkToken} token={auth.linkToken} />;
        return <LoginPage config={auth.config} reason={auth.reason} />;
      case 'off':
        if (route.name === 'viewer')
          return viewer(route.studyUID, { home: true, share: false, priors: true });
        return <StudyListPage />;
      case 'signed-in':
        return signedIn(auth.me);
    }
  }

  function signedIn(me: Me): ReactNode {
    if (me.mustChangePassword) return <PasswordPage forced />;
    if (me.role === 'link') {
      // A share link's visitor sees that one study, read-only, and nothing else.
      const study = me.studyInstanceUID ?? '';
      if (route.name === 'viewer' && route.studyUID === study)
        return viewer(study, { home: false, share: false, priors: false });
      if (route.name === 'studies' || route.name === 'notFound') return <Redirect to={`/viewer/${study}`} />;
      return (
        <Refusal
          message={t('link.otherStudy')}
          action={{ label: t('link.backToStudy'), to: `/viewer/${study}` }}
        />
      );
    }
    if (route.name === 'password') return <PasswordPage forced={false} />;
    if (me.role === 'modality') return <Refusal message={t('auth.modalityOnly')} />;
    if (route.name === 'admin') {
      if (me.role === 'administrator') return <AdminPage page={route.page} username={me.username} />;
      return (
        <Refusal
          message={t('auth.forbiddenPage', { role: t(`role.${me.role}` as MessageKey) })}
          action={{ label: t('auth.toStudies'), to: '/' }}
        />
      );
    }
    if (route.name === 'viewer')
      return viewer(route.studyUID, { home: true, share: canShare(me), priors: true });
    return <StudyListPage />;
  }
}

/** What the header says beside the name of the application. */
function headerTitle(route: Route, auth: AuthState, t: T): ReactNode {
  if (auth.status === 'signed-in' && auth.me.role === 'link') {
    const until = auth.me.shareExpiresAt;
    return until ? (
      <span className="header-title link-badge">{t('link.validUntil', { date: formatDate(until) })}</span>
    ) : null;
  }
  if (route.name === 'viewer' || route.name === 'link' || auth.status === 'signed-out') return null;
  if (route.name === 'admin' && auth.status === 'signed-in')
    return <span className="header-title">{t('admin.title')}</span>;
  return <span className="header-title">{t('app.studies')}</span>;
}
