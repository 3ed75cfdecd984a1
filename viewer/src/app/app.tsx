import { lazy, Suspense, useEffect } from 'react';
import { StudyListPage } from '../features/study-list/study-list-page';
import { loadStudy } from '../features/viewer/study-loader';
import { type Language, setLanguage, useLanguage, useT } from '../i18n';
import { matchRoute, navigate, useLocation } from './router';

// Cornerstone (about 1 MB gzipped) is only loaded for the viewer route.
const ViewerPage = lazy(() => import('../features/viewer/viewer-page'));

export function App() {
  const location = useLocation();
  const route = matchRoute(location);
  const t = useT();
  const lang = useLanguage();

  // Start the study's requests at once, in parallel with loading the viewer's code.
  if (route.name === 'viewer') loadStudy(route.studyUID);

  useEffect(() => {
    document.title = route.name === 'viewer' ? t('app.titleViewer') : t('app.titleStudies');
  }, [route.name, t]);

  return (
    <div className={`app route-${route.name}`}>
      <header className="app-header">
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
        {route.name !== 'viewer' && <span className="header-title">{t('app.studies')}</span>}
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
      </header>
      <main>
        {route.name === 'studies' && <StudyListPage />}
        {route.name === 'viewer' && (
          <Suspense fallback={<div className="viewport-message">{t('viewer.loadingStudy')}</div>}>
            <ViewerPage key={route.studyUID} studyUID={route.studyUID} />
          </Suspense>
        )}
        {route.name === 'notFound' && <StudyListPage />}
      </main>
    </div>
  );
}
